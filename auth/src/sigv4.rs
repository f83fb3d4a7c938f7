//! AWS Signature Version 4 for outbound requests (Cistern → S3-compatible origin).
//!
//! Pure functions over request parts: the caller supplies the method, host, encoded path,
//! query pairs, the headers to sign, the payload hash and the time, and receives the
//! `Authorization` and `x-amz-date` values to send.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The SHA-256 of an empty payload, as SigV4 writes it.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Long-term credentials and scope used to sign.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Region of the credential scope, e.g. `us-east-1`.
    pub region: String,
    /// Service of the credential scope, `s3` for S3.
    pub service: String,
}

/// The parts of a request that SigV4 covers.
#[derive(Debug)]
pub struct Request<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// `Host` header value (with `:port` when not the scheme's default).
    pub host: &'a str,
    /// The path exactly as sent, already URI-encoded (see [`uri_encode`]).
    pub encoded_path: &'a str,
    /// Query parameters, not encoded.
    pub query: &'a [(String, String)],
    /// Further headers to sign (names in any case), e.g. `range`, `if-match`.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the payload, or `UNSIGNED-PAYLOAD`.
    pub payload_sha256: &'a str,
    /// Signing time.
    pub time: OffsetDateTime,
}

/// Header values to add to a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Value of the `Authorization` header.
    pub authorization: String,
    /// Value of the `x-amz-date` header.
    pub amz_date: String,
}

/// Percent-encodes `s` as SigV4 requires: every byte except `A-Z a-z 0-9 - _ . ~` (and `/`
/// when `keep_slash`) becomes `%XX` with upper-case hex.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for &b in s.as_bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(HEX[(b >> 4) as usize]));
            out.push(char::from(HEX[(b & 15) as usize]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Formats `t` as the `x-amz-date` basic ISO 8601 form, `YYYYMMDDTHHMMSSZ`.
pub fn amz_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Signs `req` with `creds`.
pub fn sign(req: &Request<'_>, creds: &Credentials) -> Signature {
    let amz_date = amz_date(req.time);
    let date = &amz_date[..8];

    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), normalize_value(v)))
        .collect();
    headers.push(("host".into(), req.host.to_string()));
    headers.push((
        "x-amz-content-sha256".into(),
        req.payload_sha256.to_string(),
    ));
    headers.push(("x-amz-date".into(), amz_date.clone()));
    headers.sort();

    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");

    let mut query: Vec<(String, String)> = req
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");

    let canonical = canonical_request(
        req.method,
        req.encoded_path,
        &canonical_query,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &signed_headers,
        req.payload_sha256,
    );
    let scope = format!("{date}/{}/{}/aws4_request", creds.region, creds.service);
    let key = signing_key(
        &creds.secret_access_key,
        date,
        &creds.region,
        &creds.service,
    );
    let signature = hex::encode(signature(&key, &amz_date, &scope, &canonical));

    Signature {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id
        ),
        amz_date,
    }
}

/// The canonical request: method, encoded path, canonical query, `name:value` lines of the
/// signed headers (lower-case names in order, values already normalized), the signed header
/// list and the payload hash.
fn canonical_request<'a>(
    method: &str,
    encoded_path: &str,
    canonical_query: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    signed_headers: &str,
    payload_sha256: &str,
) -> String {
    let mut canonical = String::with_capacity(256);
    canonical.push_str(method);
    canonical.push('\n');
    canonical.push_str(encoded_path);
    canonical.push('\n');
    canonical.push_str(canonical_query);
    canonical.push('\n');
    for (k, v) in headers {
        canonical.push_str(k);
        canonical.push(':');
        canonical.push_str(v);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(signed_headers);
    canonical.push('\n');
    canonical.push_str(payload_sha256);
    canonical
}

/// The signing key for one day, region and service (what [`verify`] takes; callers may keep
/// it for the day rather than derive it per request).
pub fn signing_key(secret: &Secret, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(
        format!("AWS4{}", secret.expose()).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The signature (raw bytes) of a canonical request.
fn signature(key: &[u8], amz_date: &str, scope: &str, canonical: &str) -> Vec<u8> {
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    hmac(key, string_to_sign.as_bytes())
}

/// An inbound `Authorization: AWS4-HMAC-SHA256 …` header, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    /// Access key id.
    pub access_key: &'a str,
    /// Credential scope date, `YYYYMMDD`.
    pub date: &'a str,
    /// Credential scope region.
    pub region: &'a str,
    /// Credential scope service.
    pub service: &'a str,
    /// Signed header names as sent (`;`-separated, lower case, sorted).
    pub signed_headers: &'a str,
    /// Hex signature.
    pub signature: &'a str,
}

/// Parses an `Authorization` header value of exactly the form
/// `AWS4-HMAC-SHA256 Credential=AK/date/region/service/aws4_request, SignedHeaders=a;b,
/// Signature=hex` (fields in that order, spaces only after the commas, a 64-digit lower-case
/// hex signature). `None` for anything else: the caller leaves such requests to the full
/// verifier, so this parser may be stricter than it but never looser.
pub fn parse_authorization(v: &str) -> Option<Authorization<'_>> {
    let rest = v.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut parts = rest.split(',');
    let credential = parts.next()?.strip_prefix("Credential=")?;
    let signed = parts
        .next()?
        .trim_start_matches(' ')
        .strip_prefix("SignedHeaders=")?;
    let sig = parts
        .next()?
        .trim_start_matches(' ')
        .strip_prefix("Signature=")?;
    if parts.next().is_some() {
        return None;
    }
    let mut scope = credential.split('/');
    let (access_key, date, region, service, term) = (
        scope.next()?,
        scope.next()?,
        scope.next()?,
        scope.next()?,
        scope.next()?,
    );
    let (signed_headers, signature) = (signed, sig);
    let sorted = signed_headers
        .split(';')
        .try_fold("", |prev, h| {
            (!h.is_empty() && h > prev && !h.bytes().any(|b| b.is_ascii_uppercase())).then_some(h)
        })
        .is_some();
    (scope.next().is_none()
        && term == "aws4_request"
        && !access_key.is_empty()
        && date.len() == 8
        && sorted
        && signature.len() == 64
        && signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// The parts of an inbound request that its header signature covers, for [`verify`].
#[derive(Debug)]
pub struct Inbound<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// The path as sent; it must already be in canonical (SigV4-encoded) form.
    pub encoded_path: &'a str,
    /// The canonical query string (empty for none).
    pub canonical_query: &'a str,
    /// The value of each signed header, in the order of `SignedHeaders`.
    pub header_values: &'a [&'a str],
    /// The `x-amz-content-sha256` value.
    pub payload_sha256: &'a str,
    /// The `x-amz-date` value.
    pub amz_date: &'a str,
}

/// Whether `auth`'s signature over `req` was made with `key`, the [`signing_key`] of the
/// caller's secret for `auth`'s date, region and service. Compares in constant time.
pub fn verify(auth: &Authorization<'_>, key: &[u8], req: &Inbound<'_>) -> bool {
    let names = auth.signed_headers.split(';');
    if names.clone().count() != req.header_values.len() || !req.amz_date.starts_with(auth.date) {
        return false;
    }
    let values: Vec<String> = req
        .header_values
        .iter()
        .map(|v| normalize_value(v))
        .collect();
    let canonical = canonical_request(
        req.method,
        req.encoded_path,
        req.canonical_query,
        names.zip(values.iter().map(String::as_str)),
        auth.signed_headers,
        req.payload_sha256,
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let mine = signature(key, req.amz_date, &scope, &canonical);
    let Ok(theirs) = hex::decode(auth.signature) else {
        return false;
    };
    theirs.len() == mine.len()
        && theirs
            .iter()
            .zip(&mine)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Trims a header value and collapses inner runs of spaces, as SigV4 canonicalization requires.
fn normalize_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_creds() -> Credentials {
        Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            region: "us-east-1".into(),
            service: "s3".into(),
        }
    }

    /// Our signature of AWS's published example "GET Object" from the S3 SigV4 documentation
    /// (Authenticating Requests: Using the Authorization Header).
    fn get_object_example() -> Signature {
        sign(
            &Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                encoded_path: "/test.txt",
                query: &[],
                headers: &[("Range", "bytes=0-9")],
                payload_sha256: EMPTY_SHA256,
                time: time::macros::datetime!(2013-05-24 00:00:00 UTC),
            },
            &example_creds(),
        )
    }

    #[test]
    fn aws_documentation_get_object_example() {
        let sig = get_object_example();
        assert_eq!(sig.amz_date, "20130524T000000Z");
        assert_eq!(
            sig.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// AWS's published example "GET Bucket (List Objects)" with query parameters.
    #[test]
    fn aws_documentation_list_objects_example() {
        let t = time::macros::datetime!(2013-05-24 00:00:00 UTC);
        let sig = sign(
            &Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                encoded_path: "/",
                query: &[
                    ("max-keys".into(), "2".into()),
                    ("prefix".into(), "J".into()),
                ],
                headers: &[],
                payload_sha256: EMPTY_SHA256,
                time: t,
            },
            &example_creds(),
        );
        assert!(sig.authorization.ends_with(
            "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        ));
    }

    /// Our verifier accepts what our signer (checked against AWS's examples above) signs, and
    /// nothing that differs in any signed part.
    #[test]
    fn verify_accepts_exactly_what_was_signed() {
        let creds = example_creds();
        let sig = get_object_example();
        let auth = parse_authorization(&sig.authorization).expect("parses");
        assert_eq!(
            (auth.access_key, auth.date, auth.region, auth.service),
            ("AKIAIOSFODNN7EXAMPLE", "20130524", "us-east-1", "s3")
        );
        assert_eq!(
            auth.signed_headers,
            "host;range;x-amz-content-sha256;x-amz-date"
        );
        let values = [
            "examplebucket.s3.amazonaws.com",
            "bytes=0-9",
            EMPTY_SHA256,
            "20130524T000000Z",
        ];
        let inbound = |path: &'static str, values: &'static [&'static str]| Inbound {
            method: "GET",
            encoded_path: path,
            canonical_query: "",
            header_values: values,
            payload_sha256: EMPTY_SHA256,
            amz_date: "20130524T000000Z",
        };
        let good: &'static [&'static str] = Box::leak(Box::new(values));
        let key = |secret: &Secret| signing_key(secret, auth.date, auth.region, auth.service);
        let k = key(&creds.secret_access_key);
        assert!(verify(&auth, &k, &inbound("/test.txt", good)));
        assert!(!verify(&auth, &k, &inbound("/test.txx", good)));
        assert!(!verify(
            &auth,
            &key(&Secret::new("another")),
            &inbound("/test.txt", good)
        ));
        let other_range: &'static [&'static str] = Box::leak(Box::new([
            "examplebucket.s3.amazonaws.com",
            "bytes=0-99",
            EMPTY_SHA256,
            "20130524T000000Z",
        ]));
        assert!(!verify(&auth, &k, &inbound("/test.txt", other_range)));
        assert!(!verify(&auth, &k, &inbound("/test.txt", &good[..3])));
    }

    #[test]
    fn only_well_formed_v4_authorizations_parse() {
        let ok = "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, \
                  SignedHeaders=host;x-amz-date, Signature=";
        let hex64 = "a".repeat(64);
        assert!(parse_authorization(&format!("{ok}{hex64}")).is_some());
        for bad in [
            "AWS AK:sig".to_string(),
            format!("{ok}{}", "a".repeat(63)),
            format!("{ok}{}", "g".repeat(64)),
            format!("{ok}{hex64}, Signature={hex64}"),
            format!("{ok}{}", "A".repeat(64)),
            format!("AWS4-HMAC-SHA256 Signature={hex64}, Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=host"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request , SignedHeaders=host, Signature={hex64}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/x, SignedHeaders=host, Signature={hex64}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date;host, Signature={hex64}"),
            format!("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=Host, Signature={hex64}"),
        ] {
            assert!(parse_authorization(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn uri_encoding_follows_sigv4_rules() {
        assert_eq!(uri_encode("a b+c/d~e", true), "a%20b%2Bc/d~e");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(uri_encode("é", true), "%C3%A9");
    }
}
