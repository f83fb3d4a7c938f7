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

    let mut canonical = String::with_capacity(256);
    canonical.push_str(req.method);
    canonical.push('\n');
    canonical.push_str(req.encoded_path);
    canonical.push('\n');
    canonical.push_str(&canonical_query);
    canonical.push('\n');
    for (k, v) in &headers {
        canonical.push_str(k);
        canonical.push(':');
        canonical.push_str(v);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers);
    canonical.push('\n');
    canonical.push_str(req.payload_sha256);

    let scope = format!("{date}/{}/{}/aws4_request", creds.region, creds.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );

    let k_date = hmac(
        format!("AWS4{}", creds.secret_access_key.expose()).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac(&k_date, creds.region.as_bytes());
    let k_service = hmac(&k_region, creds.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));

    Signature {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id
        ),
        amz_date,
    }
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

    /// AWS's published example "GET Object" from the S3 SigV4 documentation
    /// (Authenticating Requests: Using the Authorization Header).
    #[test]
    fn aws_documentation_get_object_example() {
        let t = time::macros::datetime!(2013-05-24 00:00:00 UTC);
        let sig = sign(
            &Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                encoded_path: "/test.txt",
                query: &[],
                headers: &[("Range", "bytes=0-9")],
                payload_sha256: EMPTY_SHA256,
                time: t,
            },
            &example_creds(),
        );
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

    #[test]
    fn uri_encoding_follows_sigv4_rules() {
        assert_eq!(uri_encode("a b+c/d~e", true), "a%20b%2Bc/d~e");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(uri_encode("é", true), "%C3%A9");
    }
}
