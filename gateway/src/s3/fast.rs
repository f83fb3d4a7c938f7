//! The object read fast path: GetObject and HeadObject served without s3s's request parsing
//! and response serialization, which cost about 2.5 µs of server CPU per request (15 % of a
//! 4 KiB hit).
//!
//! It takes only the plainest requests — no body, a canonically encoded path, only headers
//! from a short list, anonymous or signed with a SigV4 `Authorization` header or a SigV4
//! presigned URL whose query string is exactly its six parameters — and only answers when
//! everything succeeds: the signature verifies, the policy allows, and the pipeline returns
//! the object. Anything else (a bad or unusual signature, any other query parameter, a denied
//! caller, a missing object, a failed condition, an unknown header) is left to the s3s path,
//! which produces the proper answer or error. So the fast path can only ever answer what the
//! s3s path would have answered with success.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use cistern_auth::policy::{Decision, Permission, Policy};
use cistern_auth::sigv4;
use cistern_cache::range::RangeSpec;
use cistern_cache::ObjectMeta;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use s3s::dto::{Timestamp, TimestampFormat};

use super::host::Hosts;
use super::S3Body;
use crate::pipeline::{
    valid_bucket_name, BucketBinding, CacheStatus, Conditions, EtagMatch, Pipeline, Selection,
    CACHE_HEADER,
};

/// What the fast path needs of the S3 front.
pub struct FastPath {
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) policy: Arc<Policy>,
    pub(super) hosts: Hosts,
    pub(super) region: String,
    pub(super) served: AtomicU64,
    /// Signing keys by access key, for the day they were derived for (four HMACs saved per
    /// request; the policy never changes while the process runs).
    pub(super) keys: Mutex<SigningKeys>,
}

/// Access key → (credential date, signing key).
type SigningKeys = HashMap<String, (String, Arc<[u8]>)>;

/// What the fast path made of a request.
pub enum Outcome {
    /// Answered (the operation name is for the access log).
    Served(&'static str, http::Response<s3s::Body>),
    /// Authenticated and authorized, but the pipeline failed: the s3s path authenticates and
    /// authorizes the request again and answers with this error rather than repeating the
    /// pipeline's work (origin requests included).
    Failed(Failed),
    /// Left to the s3s path.
    Declined,
}

/// A pipeline error the fast path met, for the s3s path's GetObject/HeadObject of the same
/// object (carried in the request's extensions).
#[derive(Clone)]
pub struct Failed {
    /// HEAD (else GET).
    pub head: bool,
    /// Bucket, decoded.
    pub bucket: String,
    /// Object key, decoded.
    pub key: String,
    /// The error.
    pub error: crate::error::Error,
}

impl Failed {
    /// The error, when it is for this operation on this object.
    pub fn for_object(&self, head: bool, bucket: &str, key: &str) -> Option<crate::error::Error> {
        (self.head == head && self.bucket == bucket && self.key == key).then(|| self.error.clone())
    }
}

/// Headers a fast-path request may carry. Any other header sends it down the s3s path.
const ALLOWED: &[&str] = &[
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "connection",
    "keep-alive",
    "authorization",
    "x-amz-date",
    // A signed `Date` times the signature when `x-amz-date` is absent; the listener has added
    // `x-amz-date` from it by then (`s3::auth::date_for_sigv4`).
    "date",
    "x-amz-content-sha256",
    "x-amz-user-agent",
    "amz-sdk-invocation-id",
    "amz-sdk-request",
    // Asks for checksums the front does not keep; the s3s path ignores it too.
    "x-amz-checksum-mode",
    "content-length",
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

/// Largest clock skew a signature may have (as s3s and S3 allow).
const MAX_SKEW_SECS: i64 = sigv4::MAX_SKEW_SECS;

impl FastPath {
    /// Requests answered by the fast path so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Answers a plain, successful GetObject or HeadObject (see [`Outcome`]).
    pub async fn serve<B>(&self, req: &http::Request<B>) -> Outcome {
        self.try_serve(req).await.unwrap_or(Outcome::Declined)
    }

    async fn try_serve<B>(&self, req: &http::Request<B>) -> Option<Outcome> {
        let head = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => return None,
        };
        let h = req.headers();
        let mut seen = 0usize;
        for name in h.keys() {
            if !ALLOWED.contains(&name.as_str()) {
                return None;
            }
            seen += 1;
        }
        // One value per header: repeated ones are for the s3s path to judge.
        if seen != h.len()
            || h.get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0")
        {
            return None;
        }
        let raw_path = req.uri().path();
        if !canonical_path(raw_path) {
            return None;
        }
        // As s3s: the URI's authority stands in for `Host` only on HTTP/2 and later.
        let host = match h.get(header::HOST) {
            Some(v) => v.to_str().ok()?,
            None if req.version() >= http::Version::HTTP_2 => req.uri().authority()?.as_str(),
            None => return None,
        };
        let (bucket, key) = match self.hosts.bucket_of(host) {
            Some(b) => (b.to_string(), decode(raw_path.strip_prefix('/')?)?),
            None => {
                let (b, k) = raw_path.strip_prefix('/')?.split_once('/')?;
                (decode(b)?, decode(k)?)
            }
        };
        // As s3s parses paths: a valid bucket name, a key of 1–1024 bytes.
        if key.is_empty() || key.len() > 1024 || !valid_bucket_name(&bucket) {
            return None;
        }
        let caller = self.authenticate(req, host, raw_path)?;
        let b = self.authorize(caller.as_deref(), &bucket).await?;

        let range = match h.get(header::RANGE) {
            Some(v) => Some(parse_range(v.to_str().ok()?)?),
            None => None,
        };
        let cond = Conditions {
            if_match: opt(h, header::IF_MATCH, parse_etag)?,
            if_none_match: opt(h, header::IF_NONE_MATCH, parse_etag)?,
            if_modified_since: opt(h, header::IF_MODIFIED_SINCE, parse_date)?,
            if_unmodified_since: opt(h, header::IF_UNMODIFIED_SINCE, parse_date)?,
        };
        let failed = |error| {
            Some(Outcome::Failed(Failed {
                head,
                bucket: bucket.clone(),
                key: key.clone(),
                error,
            }))
        };
        if head {
            let (meta, status, _) = match self.pipeline.head(&b, &key, None, &cond).await {
                Ok(r) => r,
                Err(e) => return failed(e),
            };
            let shown = match range {
                Some(spec) => Some(spec.resolve(meta.size).ok()?),
                None => None,
            };
            let len = shown.as_ref().map_or(meta.size, |r| r.end - r.start);
            let resp = respond(&meta, shown.as_ref(), len, status, s3s::Body::empty())?;
            self.served.fetch_add(1, Ordering::Relaxed);
            return Some(Outcome::Served("HeadObject", resp));
        }
        let sel = range.map_or(Selection::All, Selection::Range);
        let read = match self.pipeline.get(&b, &key, sel, &cond).await {
            Ok(r) => r,
            Err(e) => return failed(e),
        };
        let len = read.body.remaining();
        let body = s3s::Body::from(Box::pin(S3Body(read.body)) as s3s::stream::DynByteStream);
        let resp = respond(&read.meta, read.range.as_ref(), len, read.cache, body)?;
        self.served.fetch_add(1, Ordering::Relaxed);
        Some(Outcome::Served("GetObject", resp))
    }

    /// The caller: `Some(None)` anonymous, `Some(Some(ak))` a verified signature, `None` for
    /// anything the fast path does not verify itself.
    fn authenticate<B>(
        &self,
        req: &http::Request<B>,
        host: &str,
        raw_path: &str,
    ) -> Option<Option<String>> {
        let h = req.headers();
        let sigv4_headers = || {
            h.contains_key(header::AUTHORIZATION)
                || h.contains_key("x-amz-date")
                || h.contains_key("x-amz-content-sha256")
        };
        // Seconds since the epoch, read only for a signed request.
        let now = || {
            SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        };
        let (auth, amz_date, payload, canonical_query, presigned);
        if let Some(query) = req.uri().query() {
            // Query-string authentication, and nothing else in the query (no header
            // signature beside it either: that mix is for s3s to judge).
            if sigv4_headers() {
                return None;
            }
            presigned = sigv4::parse_presigned(query)?;
            if !presigned.valid_at(now()) {
                return None;
            }
            auth = presigned.authorization()?;
            amz_date = presigned.amz_date;
            payload = "UNSIGNED-PAYLOAD";
            canonical_query = presigned.canonical_query();
        } else {
            let Some(value) = h.get(header::AUTHORIZATION) else {
                // Anonymous: no SigV4 headers either (a half-signed request is for s3s to
                // refuse).
                return (!sigv4_headers()).then_some(None);
            };
            auth = sigv4::parse_authorization(value.to_str().ok()?)?;
            amz_date = h.get("x-amz-date")?.to_str().ok()?;
            let signed_at = sigv4::parse_amz_date(amz_date)?;
            if (now() - signed_at).abs() > MAX_SKEW_SECS || amz_date.get(..8)? != auth.date {
                return None;
            }
            payload = h.get("x-amz-content-sha256")?.to_str().ok()?;
            if payload != sigv4::EMPTY_SHA256 && payload != "UNSIGNED-PAYLOAD" {
                return None;
            }
            canonical_query = "";
        }
        if auth.service != "s3" || auth.region != self.region {
            return None;
        }
        let mut values = [""; 12];
        let mut n = 0;
        let mut has_host = false;
        for name in auth.signed_headers.split(';') {
            let v = if name == "host" {
                has_host = true;
                host
            } else {
                h.get(name)?.to_str().ok()?
            };
            *values.get_mut(n)? = v;
            n += 1;
        }
        let key = self.signing_key(auth.access_key, auth.date)?;
        let ok = has_host
            && sigv4::verify(
                &auth,
                &key,
                &sigv4::Inbound {
                    method: req.method().as_str(),
                    encoded_path: raw_path,
                    canonical_query,
                    header_values: &values[..n],
                    payload_sha256: payload,
                    amz_date,
                },
            );
        ok.then(|| Some(auth.access_key.to_string()))
    }

    /// The signing key of principal `ak` for `date` (in this front's region), derived once
    /// a day; `None` for an unknown access key.
    fn signing_key(&self, ak: &str, date: &str) -> Option<Arc<[u8]>> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((d, k)) = keys.get(ak) {
            if d == date {
                return Some(Arc::clone(k));
            }
        }
        let principal = self.policy.principal(ak)?;
        let k: Arc<[u8]> = sigv4::signing_key(&principal.secret, date, &self.region, "s3").into();
        keys.insert(ak.to_string(), (date.to_string(), Arc::clone(&k)));
        Some(k)
    }

    /// The bucket, when `caller` may read it — decided as the s3s path's access check
    /// (`s3::auth::Access`) decides: a signed caller by its scope alone, an anonymous one by
    /// the bucket's `public_read`.
    async fn authorize(&self, caller: Option<&str>, bucket: &str) -> Option<Arc<BucketBinding>> {
        let catalog = self.pipeline.catalog();
        // Resolved before the decision only for anonymous callers (their answer depends on
        // the bucket's flag); a signed caller's scope is decided by name first.
        let resolved = match caller {
            Some(_) => None,
            None if !catalog.could_be_public(bucket) => return None,
            None => Some(catalog.resolve(bucket).await.ok()?),
        };
        let public_read = resolved.as_ref().is_some_and(|b| b.public_read);
        if self
            .policy
            .authorize(caller, bucket, Permission::Read, public_read)
            != Decision::Allow
        {
            return None;
        }
        match resolved {
            Some(b) => Some(b),
            None => catalog.resolve(bucket).await.ok(),
        }
    }
}

/// The response s3s would send for the object (minus `x-amz-request-id`, added by the
/// listener for both paths).
fn respond(
    meta: &ObjectMeta,
    range: Option<&std::ops::Range<u64>>,
    len: u64,
    cache: CacheStatus,
    body: s3s::Body,
) -> Option<http::Response<s3s::Body>> {
    let mut resp = http::Response::new(body);
    if range.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    let hs = resp.headers_mut();
    hs.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let mut opt = |name: header::HeaderName, v: &Option<String>| -> Option<()> {
        if let Some(v) = v {
            hs.insert(name, HeaderValue::from_str(v).ok()?);
        }
        Some(())
    };
    opt(header::CACHE_CONTROL, &meta.cache_control)?;
    opt(header::CONTENT_DISPOSITION, &meta.content_disposition)?;
    opt(header::CONTENT_ENCODING, &meta.content_encoding)?;
    opt(header::CONTENT_LANGUAGE, &meta.content_language)?;
    hs.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(r) = range {
        let v = super::content_range(r, meta.size);
        hs.insert(header::CONTENT_RANGE, HeaderValue::from_str(&v).ok()?);
    }
    let ctype = meta
        .content_type
        .as_deref()
        .unwrap_or(super::DEFAULT_CONTENT_TYPE);
    hs.insert(header::CONTENT_TYPE, HeaderValue::from_str(ctype).ok()?);
    let mut etag = String::with_capacity(meta.etag.len() + 2);
    etag.push('"');
    etag.push_str(&meta.etag);
    etag.push('"');
    hs.insert(header::ETAG, HeaderValue::from_str(&etag).ok()?);
    hs.insert(header::LAST_MODIFIED, http_date(meta.last_modified)?);
    for (k, v) in &meta.user_metadata {
        // s3s sends non-ASCII values RFC 2047-encoded: those objects take the s3s path.
        if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return None;
        }
        let name = header::HeaderName::from_bytes(format!("x-amz-meta-{k}").as_bytes()).ok()?;
        hs.insert(name, HeaderValue::from_str(v).ok()?);
    }
    super::origin_headers(meta, hs);
    hs.insert(CACHE_HEADER, HeaderValue::from_static(cache.as_str()));
    Some(resp)
}

/// `t` as an HTTP date: by hand for 1970–9999 (a tenth of the cost of a general formatter,
/// on every response), else by s3s's formatter as the s3s path writes it (`httpdate` panics
/// outside that span, and a file's mtime can be there).
fn http_date(t: SystemTime) -> Option<HeaderValue> {
    if let Some(d) = crate::dates::http_date(t) {
        return HeaderValue::from_bytes(&d).ok();
    }
    let mut v = Vec::with_capacity(29);
    Timestamp::from(t)
        .format(TimestampFormat::HttpDate, &mut v)
        .ok()?;
    HeaderValue::from_bytes(&v).ok()
}

/// Whether `p` is a path as SigV4 signs it: every byte unreserved or `/`, or a `%XX`
/// (upper-case hex) escape of a byte that must be escaped. Other spellings of the same path
/// are left to s3s, which tries both the decoded and the raw form.
fn canonical_path(p: &str) -> bool {
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b'/') => {
                i += 1;
            }
            b'%' => {
                let hex = |c: u8| matches!(c, b'0'..=b'9' | b'A'..=b'F');
                let (Some(&h1), Some(&h2)) = (b.get(i + 1), b.get(i + 2)) else {
                    return false;
                };
                if !hex(h1) || !hex(h2) {
                    return false;
                }
                let v = u8::from_str_radix(&p[i + 1..i + 3], 16).unwrap_or(b'a');
                if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'_' | b'.' | b'~' | b'/') {
                    return false;
                }
                i += 3;
            }
            _ => return false,
        }
    }
    b.first() == Some(&b'/')
}

/// Percent-decodes a canonical path segment into UTF-8.
fn decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

fn opt<T>(
    h: &HeaderMap,
    name: header::HeaderName,
    parse: fn(&str) -> Option<T>,
) -> Option<Option<T>> {
    match h.get(name) {
        None => Some(None),
        Some(v) => parse(v.to_str().ok()?).map(Some),
    }
}

/// `*` or one strong quoted ETag; lists and weak ETags take the s3s path.
fn parse_etag(v: &str) -> Option<EtagMatch> {
    if v == "*" {
        return Some(EtagMatch::Any);
    }
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('"')).then(|| EtagMatch::OneOf(vec![inner.to_string()]))
}

/// As s3s reads conditional dates: the IMF-fixdate form only.
fn parse_date(v: &str) -> Option<SystemTime> {
    let t = Timestamp::parse(TimestampFormat::HttpDate, v).ok()?;
    Some(SystemTime::from(time::OffsetDateTime::from(t)))
}

/// Whether S3 ignores this `Range` value and sends the whole object: several byte ranges (S3
/// serves one range per request), or one whose last position is before its first (invalid;
/// RFC 9110 says to ignore a range set holding one). s3s refuses both with `400
/// InvalidArgument`; see `s3::auth::drop_ignored_range`.
pub(crate) fn ignored_range(v: &str) -> bool {
    let Some(set) = v.strip_prefix("bytes=") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit());
    let spec = |s: &str| {
        s.split_once('-').is_some_and(|(a, b)| {
            (digits(a) || a.is_empty())
                && (digits(b) || b.is_empty())
                && !(a.is_empty() && b.is_empty())
        })
    };
    let backwards = |s: &str| {
        s.split_once('-').is_some_and(|(a, b)| {
            digits(a) && digits(b) && a.parse::<u64>().ok() > b.parse::<u64>().ok()
        })
    };
    let specs: Vec<&str> = set.split(',').map(str::trim).collect();
    match specs.as_slice() {
        [one] => backwards(one),
        many => many.iter().all(|s| spec(s)),
    }
}

/// `bytes=A-B`, `bytes=A-` or `bytes=-N` with plain digits (what s3s accepts as one range).
pub(crate) fn parse_range(v: &str) -> Option<RangeSpec> {
    let spec = v.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    // Positions beyond i64::MAX are refused by s3s; suffix lengths are not.
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let pos = |s: &str| num(s).filter(|&n| n <= i64::MAX as u64);
    match (a.is_empty(), b.is_empty()) {
        (false, false) => {
            let (first, last) = (pos(a)?, pos(b)?);
            (first <= last).then_some(RangeSpec::FromTo { first, last })
        }
        (false, true) => Some(RangeSpec::From { first: pos(a)? }),
        (true, false) => Some(RangeSpec::Suffix { len: num(b)? }),
        (true, true) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_paths_qualify() {
        assert!(canonical_path("/data/dir/obj-001.bin"));
        assert!(canonical_path("/data/a%20b/%C3%A9"));
        assert!(!canonical_path("/data/a b"));
        assert!(!canonical_path("/data/a+b"));
        assert!(!canonical_path("/data/%7E"), "an escaped unreserved byte");
        assert!(!canonical_path("/data/%2f"), "lower-case hex");
        assert!(!canonical_path("/data/%2"));
        assert!(!canonical_path("data/x"));
    }

    #[test]
    fn times_outside_1970_to_9999_are_formatted_not_panicked_on() {
        let meta = ObjectMeta {
            size: 1,
            etag: "e".into(),
            last_modified: SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(86_400),
            content_type: None,
            content_encoding: None,
            cache_control: None,
            content_disposition: None,
            content_language: None,
            user_metadata: vec![],
            content_md5: None,
            created: None,
            origin_kind: None,
            origin_headers: vec![("x-amz-server-side-encryption".into(), "AES256".into())],
            volatile: false,
        };
        let resp = respond(&meta, None, 1, CacheStatus::Hit, s3s::Body::empty()).expect("resp");
        assert_eq!(
            resp.headers()[header::LAST_MODIFIED],
            "Wed, 31 Dec 1969 00:00:00 GMT"
        );
        // An S3 origin's own headers come back on hits too.
        assert_eq!(resp.headers()["x-amz-server-side-encryption"], "AES256");
    }

    #[test]
    fn ranges_and_conditions_parse_as_the_s3s_path_reads_them() {
        assert!(matches!(
            parse_range("bytes=0-9"),
            Some(RangeSpec::FromTo { first: 0, last: 9 })
        ));
        assert!(matches!(
            parse_range("bytes=5-"),
            Some(RangeSpec::From { first: 5 })
        ));
        assert!(matches!(
            parse_range("bytes=-3"),
            Some(RangeSpec::Suffix { len: 3 })
        ));
        for bad in [
            "bytes=5-2",
            "bytes=0-1,5-6",
            "bytes=-",
            "items=0-1",
            "bytes= 0-1",
            "bytes=0-9300000000000000000",
        ] {
            assert!(parse_range(bad).is_none(), "{bad}");
        }
        for ignored in [
            "bytes=5-2",
            "bytes=0-1,5-6",
            "bytes=0-1, -5, 9-",
            "bytes=9-0,1-2",
        ] {
            assert!(ignored_range(ignored), "{ignored}");
        }
        for kept in [
            "bytes=0-9",
            "bytes=5-",
            "bytes=-3",
            "bytes=0-1,x",
            "bytes=0-1,-",
            "items=0-1,5-6",
            "bytes=",
            "bytes=a-b",
        ] {
            assert!(!ignored_range(kept), "{kept}");
        }
        assert!(matches!(parse_etag("*"), Some(EtagMatch::Any)));
        assert!(matches!(parse_etag("\"abc\""), Some(EtagMatch::OneOf(v)) if v == ["abc"]));
        assert!(parse_etag("W/\"abc\"").is_none());
        assert!(parse_etag("\"a\", \"b\"").is_none());
        assert!(parse_date("Sun, 06 Nov 1994 08:49:37 GMT").is_some());
        assert!(parse_date("Sunday, 06-Nov-94 08:49:37 GMT").is_none());
        assert_eq!(
            sigv4::parse_amz_date("20130524T000000Z"),
            Some(1_369_353_600)
        );
        assert!(sigv4::parse_amz_date("20131324T000000Z").is_none());
    }
}
