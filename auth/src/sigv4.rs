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

/// A presigned URL's query string for `req`: its `query` parameters (e.g. `response-*`
/// overrides) and the presigning ones, signed (`req.headers` and `req.payload_sha256` are
/// ignored: the URL signs `host` and an unsigned payload), valid for `expires` seconds.
pub fn presign(req: &Request<'_>, creds: &Credentials, expires: u32) -> String {
    let amz_date = amz_date(req.time);
    let date = &amz_date[..8];
    let scope = format!("{date}/{}/{}/aws4_request", creds.region, creds.service);
    let credential = format!("{}/{scope}", creds.access_key_id);
    let expires = expires.to_string();
    let mut query: Vec<(String, String)> = [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", credential.as_str()),
        ("X-Amz-Date", amz_date.as_str()),
        ("X-Amz-Expires", expires.as_str()),
        ("X-Amz-SignedHeaders", "host"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain(req.query.iter().cloned())
    .map(|(k, v)| (uri_encode(&k, false), uri_encode(&v, false)))
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
        [("host", req.host)].into_iter(),
        "host",
        "UNSIGNED-PAYLOAD",
    );
    let key = signing_key(
        &creds.secret_access_key,
        date,
        &creds.region,
        &creds.service,
    );
    let signature = hex::encode(signature(&key, &amz_date, &scope, &canonical));
    format!("{canonical_query}&X-Amz-Signature={signature}")
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
    authorization_parts(credential, signed, sig)
}

/// A credential (`AK/date/region/service/aws4_request`), signed-header list (sorted, lower
/// case, no empty or repeated name) and signature (64 lower-case hex digits), checked.
fn authorization_parts<'a>(
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
) -> Option<Authorization<'a>> {
    let mut scope = credential.split('/');
    let (access_key, date, region, service, term) = (
        scope.next()?,
        scope.next()?,
        scope.next()?,
        scope.next()?,
        scope.next()?,
    );
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
        && date.bytes().all(|b| b.is_ascii_digit())
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
///
/// The canonical request is hashed as it is formed and the string to sign is fed to the HMAC
/// piece by piece: nothing is allocated (this runs on every signed cache hit).
pub fn verify(auth: &Authorization<'_>, key: &[u8], req: &Inbound<'_>) -> bool {
    let names = auth.signed_headers.split(';');
    if names.clone().count() != req.header_values.len() || !req.amz_date.starts_with(auth.date) {
        return false;
    }
    let mut h = Sha256::new();
    for part in [
        req.method,
        "\n",
        req.encoded_path,
        "\n",
        req.canonical_query,
        "\n",
    ] {
        h.update(part.as_bytes());
    }
    for (name, value) in names.zip(req.header_values) {
        h.update(name.as_bytes());
        h.update(b":");
        update_normalized(&mut h, value);
        h.update(b"\n");
    }
    for part in ["\n", auth.signed_headers, "\n", req.payload_sha256] {
        h.update(part.as_bytes());
    }
    let mut hashed = [0u8; 64];
    hex_lower(&h.finalize(), &mut hashed);
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in [
        "AWS4-HMAC-SHA256\n",
        req.amz_date,
        "\n",
        auth.date,
        "/",
        auth.region,
        "/",
        auth.service,
        "/aws4_request\n",
    ] {
        mac.update(part.as_bytes());
    }
    mac.update(&hashed);
    let mine = mac.finalize().into_bytes();
    let mut theirs = [0u8; 32];
    hex::decode_to_slice(auth.signature, &mut theirs).is_ok()
        && bool::from(subtle::ConstantTimeEq::ct_eq(&theirs[..], &mine[..]))
}

/// Feeds `v` to `h` as [`normalize_value`] writes it, without allocating for the usual value
/// (printable ASCII, single inner spaces, nothing to trim).
fn update_normalized(h: &mut Sha256, v: &str) {
    let b = v.as_bytes();
    let plain = b.first() != Some(&b' ')
        && b.last() != Some(&b' ')
        && b.iter().all(|&c| (0x21..0x7f).contains(&c) || c == b' ')
        && !b.windows(2).any(|w| w == b"  ");
    if plain {
        h.update(b);
        return;
    }
    for (i, word) in v.split_whitespace().enumerate() {
        if i > 0 {
            h.update(b" ");
        }
        h.update(word.as_bytes());
    }
}

/// Lower-case hex of `bytes` into `out` (twice as long).
fn hex_lower(bytes: &[u8], out: &mut [u8]) {
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = LOWER[usize::from(b >> 4)];
        out[2 * i + 1] = LOWER[usize::from(b & 15)];
    }
}

/// The presigning parameters of an inbound SigV4 presigned URL (query-string authentication),
/// parsed by [`parse_presigned`].
#[derive(Debug)]
pub struct Presigned<'a> {
    /// `X-Amz-Credential`, decoded: `AK/date/region/service/aws4_request`.
    credential: String,
    /// `X-Amz-SignedHeaders`, decoded.
    signed_headers: String,
    /// `X-Amz-Signature`.
    signature: &'a str,
    /// `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`).
    pub amz_date: &'a str,
    /// The signing time, Unix seconds.
    pub signed_at: i64,
    /// `X-Amz-Expires`, seconds (at most a week).
    pub expires: u32,
    /// The canonical query string the signature covers (every parameter but the signature).
    canonical_query: String,
}

/// The longest validity of a presigned URL (S3's: 7 days).
pub const MAX_PRESIGNED_EXPIRES: u32 = 604_800;

/// How far in the future a signature's time may be (s3s's and S3's clock-skew allowance).
pub const MAX_SKEW_SECS: i64 = 15 * 60;

/// The query parameters of a presigned URL, in canonical (byte) order, the signature last.
const PRESIGN_PARAMS: [&str; 6] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
];

/// Parses a query string that is exactly a SigV4 presigned URL's six parameters
/// (`X-Amz-Algorithm=AWS4-HMAC-SHA256`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires` of at
/// most a week, `X-Amz-SignedHeaders`, `X-Amz-Signature` of 64 lower-case hex digits), each once,
/// in any order, each name and value already in SigV4's canonical encoding (so that the
/// canonical query string is the parameters as sent, sorted). `None` for anything else —
/// another parameter (`response-*`, `versionId`, `x-id`, a session token), a repeated one,
/// another spelling of the same bytes: the caller leaves those to the full verifier, so this
/// parser may be stricter than it but never looser. The credential's date must be the
/// signing date's.
pub fn parse_presigned(query: &str) -> Option<Presigned<'_>> {
    let mut values: [Option<&str>; 6] = [None; 6];
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=')?;
        let i = PRESIGN_PARAMS.iter().position(|p| *p == name)?;
        if values[i].replace(value).is_some() || !canonically_encoded(value) {
            return None;
        }
    }
    let [Some(algorithm), Some(credential), Some(amz_date), Some(expires), Some(signed), Some(signature)] =
        values
    else {
        return None;
    };
    let decode = |v: &str| {
        percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    let expires_n: u32 =
        (!expires.is_empty() && expires.len() <= 10 && expires.bytes().all(|c| c.is_ascii_digit()))
            .then(|| expires.parse().ok())
            .flatten()?;
    let signed_at = parse_amz_date(amz_date)?;
    let mut canonical_query = String::with_capacity(query.len());
    for (i, v) in values[..5].iter().enumerate() {
        if i > 0 {
            canonical_query.push('&');
        }
        canonical_query.push_str(PRESIGN_PARAMS[i]);
        canonical_query.push('=');
        canonical_query.push_str(v.unwrap_or_default());
    }
    let p = Presigned {
        credential: decode(credential)?,
        signed_headers: decode(signed)?,
        signature,
        amz_date,
        signed_at,
        expires: expires_n,
        canonical_query,
    };
    let auth = p.authorization()?;
    (algorithm == "AWS4-HMAC-SHA256"
        && expires_n <= MAX_PRESIGNED_EXPIRES
        && amz_date.get(..8) == Some(auth.date))
    .then_some(p)
}

impl Presigned<'_> {
    /// The credential scope, signed headers and signature, as an `Authorization` header
    /// carries them.
    pub fn authorization(&self) -> Option<Authorization<'_>> {
        authorization_parts(&self.credential, &self.signed_headers, self.signature)
    }

    /// The canonical query string the signature covers.
    pub fn canonical_query(&self) -> &str {
        &self.canonical_query
    }

    /// Whether the URL is valid at `now` (Unix seconds): signed at most [`MAX_SKEW_SECS`] in
    /// the future, and not expired (exactly at expiry it still is, as s3s decides).
    pub fn valid_at(&self, now: i64) -> bool {
        self.signed_at - now <= MAX_SKEW_SECS && now - self.signed_at <= i64::from(self.expires)
    }
}

/// Whether `v` is in SigV4's canonical query encoding: unreserved bytes as they are, every
/// other byte (`/` included) as `%XX` with upper-case hex.
fn canonically_encoded(v: &str) -> bool {
    let b = v.as_bytes();
    let unreserved = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~');
    let hex = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let mut i = 0;
    while i < b.len() {
        if unreserved(b[i]) {
            i += 1;
            continue;
        }
        if b[i] != b'%' {
            return false;
        }
        let (Some(h), Some(l)) = (
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) else {
            return false;
        };
        if unreserved(h << 4 | l) {
            return false;
        }
        i += 3;
    }
    true
}

/// `YYYYMMDDTHHMMSSZ` (the `x-amz-date` form) as Unix seconds; `None` for anything else.
pub fn parse_amz_date(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = v.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let date = time::Date::from_calendar_date(
        i32::try_from(n(0..4)?).ok()?,
        time::Month::try_from(u8::try_from(n(4..6)?).ok()?).ok()?,
        u8::try_from(n(6..8)?).ok()?,
    )
    .ok()?;
    let t = time::Time::from_hms(
        u8::try_from(n(9..11)?).ok()?,
        u8::try_from(n(11..13)?).ok()?,
        u8::try_from(n(13..15)?).ok()?,
    )
    .ok()?;
    Some(date.with_time(t).assume_utc().unix_timestamp())
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
mod tests;
