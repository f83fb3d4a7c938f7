//! Authentication (secret lookup for s3s's SigV4 verification) and authorization (the policy,
//! enforced on every request, cache hits included).

use std::sync::{Arc, OnceLock};

use cistern_auth::policy::{Decision, Permission, Policy};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{s3_error, S3Result};

use crate::error::ErrorKind;
use crate::pipeline::Pipeline;

/// Carries the operation name from the access check to the access log and metrics.
#[derive(Clone, Default)]
pub struct OpSlot(pub Arc<OnceLock<String>>);

/// Looks up secrets of configured principals.
pub struct Secrets(pub Arc<Policy>);

#[async_trait::async_trait]
impl S3Auth for Secrets {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.principal(access_key) {
            Some(p) => Ok(SecretKey::from(p.secret.expose())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS access key Id you provided does not exist in our records."
            )),
        }
    }
}

/// The permission an S3 operation needs, or `None` for operations Cistern does not implement
/// (they answer NotImplemented to authenticated callers).
pub fn permission_for(op: &str) -> Option<Permission> {
    match op {
        "GetObject" | "HeadObject" | "GetObjectTagging" => Some(Permission::Read),
        "PutObject"
        | "CreateBucket"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "ListParts"
        | "PutObjectTagging"
        | "DeleteObjectTagging"
        | "CompleteMultipartUpload"
        | "AbortMultipartUpload" => Some(Permission::Write),
        "DeleteObject" | "DeleteObjects" | "DeleteBucket" => Some(Permission::Delete),
        "ListObjects"
        | "ListObjectsV2"
        | "HeadBucket"
        | "GetBucketLocation"
        | "ListBuckets"
        | "ListMultipartUploads"
        | "ListObjectVersions" => Some(Permission::List),
        _ => None,
    }
}

/// Enforces the policy.
pub struct Access {
    /// The policy.
    pub policy: Arc<Policy>,
    /// For bucket lookups (public-read flags, existence).
    pub pipeline: Arc<Pipeline>,
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let op = cx.s3_op().name().to_string();
        if let Some(slot) = cx.extensions_mut().get::<OpSlot>() {
            let _ = slot.0.set(op.clone());
        }
        let caller = cx.credentials().map(|c| c.access_key.clone());
        let bucket = match cx.s3_path() {
            S3Path::Root => None,
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(bucket.to_string()),
        };
        let Some(perm) = permission_for(&op) else {
            // Unimplemented operations: authenticated callers learn it is not implemented.
            return if caller.is_some() {
                Ok(())
            } else {
                Err(denied())
            };
        };
        self.allow(caller.as_deref(), bucket.as_deref(), perm).await
    }
}

fn denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

impl Access {
    /// Whether `caller` (anonymous when `None`) may do `perm` on `bucket` (`None`: the service,
    /// for ListBuckets: any authenticated caller, its listing filtered by scope).
    pub async fn allow(
        &self,
        caller: Option<&str>,
        bucket: Option<&str>,
        perm: Permission,
    ) -> S3Result<()> {
        let Some(bucket) = bucket else {
            return if caller.is_some() {
                Ok(())
            } else {
                Err(denied())
            };
        };
        match caller {
            Some(ak) => {
                // Scope is decided by name first, so a caller cannot probe buckets it may not see.
                match self.policy.authorize(Some(ak), bucket, perm, false) {
                    Decision::Allow => Ok(()),
                    _ => Err(denied()),
                }
            }
            None if !self.pipeline.catalog().could_be_public(bucket) => {
                Err(self.anonymous_private(bucket).await)
            }
            None => match self.pipeline.catalog().resolve(bucket).await {
                Ok(b)
                    if self.policy.authorize(None, bucket, perm, b.public_read)
                        == Decision::Allow =>
                {
                    Ok(())
                }
                Ok(_) => Err(denied()),
                Err(e) => Err(super::error::to_s3(e)),
            },
        }
    }

    /// What an anonymous caller learns of a bucket it may not read, as S3 answers: 404
    /// `NoSuchBucket` when Cistern serves no such bucket, else 403. A configured bucket is
    /// denied without asking any origin; a name only an auto-exposing origin could have is
    /// looked up there, as for a signed caller (S3 too tells anyone whether a bucket exists).
    async fn anonymous_private(&self, bucket: &str) -> s3s::S3Error {
        let catalog = self.pipeline.catalog();
        if catalog.is_configured(bucket) {
            return denied();
        }
        match catalog.resolve(bucket).await {
            Err(e) if e.kind() == ErrorKind::NoSuchBucket => super::error::to_s3(e),
            _ => denied(),
        }
    }
}

/// The answer S3 gives a signed request whose time it cannot tell.
const NO_DATE: &str = "AWS authentication requires a valid Date or x-amz-date header";

/// SigV4 timed by the `Date` header. SigV4 takes the request time from `x-amz-date`, else from
/// the signed `Date` header (botocore signs so whenever a request carries `Date`); s3s 0.14 and
/// the fast path read only `x-amz-date`. For an `AWS4-HMAC-SHA256` `Authorization` header
/// without `x-amz-date`, this adds `x-amz-date` holding the signed `Date` converted to ISO 8601
/// basic form. The added header is not among `SignedHeaders`, so the canonical request the
/// signature covers is unchanged (it has `date:` with the client's value) and the
/// string-to-sign carries that very time, as AWS computes it; the credential scope's date and
/// the 15-minute skew are then checked against it as for any request. A request whose time is
/// not a signed, valid `Date` is refused as S3 refuses it: 403 `AccessDenied`. Anything else
/// (presigned URLs, anonymous requests, `x-amz-date` present) is left as it is.
pub fn date_for_sigv4(h: &mut http::HeaderMap) -> Option<(http::StatusCode, &'static str, String)> {
    if h.contains_key("x-amz-date") {
        return None;
    }
    let auth = h.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    // Without SignedHeaders the header is malformed: s3s refuses it, as always.
    let signed = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")?
        .split(',')
        .find_map(|p| p.trim().strip_prefix("SignedHeaders="))?;
    let denied = || {
        Some((
            http::StatusCode::FORBIDDEN,
            "AccessDenied",
            NO_DATE.to_string(),
        ))
    };
    if !signed.split(';').any(|n| n.trim() == "date") {
        return denied();
    }
    let mut dates = h.get_all(http::header::DATE).iter();
    let (Some(date), None) = (dates.next(), dates.next()) else {
        return denied();
    };
    let Some(t) = date.to_str().ok().and_then(parse_request_date) else {
        return denied();
    };
    let v = http::HeaderValue::from_str(&cistern_auth::sigv4::amz_date(t)).ok()?;
    h.insert("x-amz-date", v);
    None
}

/// Drops a `Range` header S3 ignores (several ranges, or a backwards one: see
/// `fast::ignored_range`) from a GET or HEAD whose signature does not cover it — anonymous,
/// presigned without `range` in `X-Amz-SignedHeaders`, a SigV4 header that does not sign it,
/// SigV2 — so that both paths send the whole object, as S3 does. A header the signature
/// covers stays (the check would fail without it), and s3s refuses it (`400`).
pub fn drop_ignored_range(method: &http::Method, h: &mut http::HeaderMap, query: Option<&str>) {
    if !matches!(*method, http::Method::GET | http::Method::HEAD) {
        return;
    }
    let mut values = h.get_all(http::header::RANGE).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return;
    };
    if !v.to_str().is_ok_and(super::fast::ignored_range) || range_signed(h, query) {
        return;
    }
    h.remove(http::header::RANGE);
}

/// Whether a SigV4 signature of the request (header or query) covers `range`; true when
/// unsure.
fn range_signed(h: &http::HeaderMap, query: Option<&str>) -> bool {
    let names = |list: &str| {
        list.split(';')
            .any(|n| n.trim().eq_ignore_ascii_case("range"))
    };
    if let Some(auth) = h.get(http::header::AUTHORIZATION) {
        let Ok(auth) = auth.to_str() else {
            return true;
        };
        return match auth.strip_prefix("AWS4-HMAC-SHA256") {
            Some(rest) => rest
                .split(',')
                .find_map(|p| p.trim().strip_prefix("SignedHeaders="))
                .is_none_or(names),
            // SigV2 signs no Range.
            None => false,
        };
    }
    query.is_some_and(|q| {
        q.split('&')
            .filter_map(|p| p.split_once('='))
            .filter(|(k, _)| k.eq_ignore_ascii_case("X-Amz-SignedHeaders"))
            .any(|(_, v)| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .map_or(true, |v| names(&v))
            })
    })
}

/// A request `Date` as clients write it: RFC 7231's IMF-fixdate (`Sun, 06 Nov 1994 08:49:37
/// GMT`) and obsolete forms, RFC 2822 with a numeric zone (Python's `email.utils.formatdate`,
/// which botocore uses: `… -0000`), or the ISO 8601 basic form AWS's documentation shows for
/// it (`20150830T123600Z`).
pub fn parse_request_date(v: &str) -> Option<time::OffsetDateTime> {
    let v = v.trim();
    if let Ok(t) = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822) {
        return Some(t.to_offset(time::UtcOffset::UTC));
    }
    if let Ok(t) = httpdate::parse_http_date(v) {
        return Some(time::OffsetDateTime::from(t));
    }
    let secs = cistern_auth::sigv4::parse_amz_date(v)?;
    time::OffsetDateTime::from_unix_timestamp(secs).ok()
}

#[cfg(test)]
mod date_tests {
    use super::*;

    fn at(h: &http::HeaderMap) -> Option<&str> {
        h.get("x-amz-date").and_then(|v| v.to_str().ok())
    }

    #[test]
    fn request_dates_parse_in_the_forms_clients_send() {
        let want = time::macros::datetime!(2026-12-07 02:16:33 UTC);
        for v in [
            "Mon, 07 Dec 2026 02:16:33 GMT",
            "Mon, 07 Dec 2026 02:16:33 -0000",
            "Mon, 07 Dec 2026 02:16:33 +0000",
            "Mon, 07 Dec 2026 03:16:33 +0100",
            "07 Dec 2026 02:16:33 GMT",
            "Monday, 07-Dec-26 02:16:33 GMT",
            "Mon Dec  7 02:16:33 2026",
            "20261207T021633Z",
        ] {
            assert_eq!(parse_request_date(v), Some(want), "{v}");
        }
        for bad in [
            "",
            "Bad Date",
            "2026-12-07T02:16:33Z",
            "Mon, 32 Dec 2026 02:16:33 GMT",
        ] {
            assert_eq!(parse_request_date(bad), None, "{bad:?}");
        }
    }

    fn headers(auth: &str, date: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(auth).expect("auth"),
        );
        if let Some(d) = date {
            h.insert(
                http::header::DATE,
                http::HeaderValue::from_str(d).expect("date"),
            );
        }
        h
    }

    const SIGNED_DATE: &str = "AWS4-HMAC-SHA256 Credential=AK/20261207/us-east-1/s3/aws4_request, SignedHeaders=date;host;x-amz-content-sha256, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signed_date_header_times_the_signature() {
        let mut h = headers(SIGNED_DATE, Some("Mon, 07 Dec 2026 02:16:33 -0000"));
        assert_eq!(date_for_sigv4(&mut h), None);
        assert_eq!(at(&h), Some("20261207T021633Z"));

        // x-amz-date, when sent, times the request (as AWS reads it): nothing is added.
        let mut h = headers(SIGNED_DATE, Some("Mon, 07 Dec 2026 02:16:33 GMT"));
        h.insert(
            "x-amz-date",
            http::HeaderValue::from_static("20261207T021600Z"),
        );
        assert_eq!(date_for_sigv4(&mut h), None);
        assert_eq!(at(&h), Some("20261207T021600Z"));

        // Anonymous, presigned and SigV2 requests are not this function's business.
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::DATE,
            http::HeaderValue::from_static("Mon, 07 Dec 2026 02:16:33 GMT"),
        );
        assert_eq!(date_for_sigv4(&mut h), None);
        assert_eq!(at(&h), None);
        let mut h = headers("AWS AK:c2ln", Some("Mon, 07 Dec 2026 02:16:33 GMT"));
        assert_eq!(date_for_sigv4(&mut h), None);
        assert_eq!(at(&h), None);
    }

    /// A PUT signed by botocore 1.43 (`S3SigV4Auth`) with a `Date` header set, at a fixed
    /// time: botocore then signs `date` and sends no `x-amz-date`.
    #[test]
    fn botocores_date_signed_request_verifies_with_the_added_x_amz_date() {
        let payload = "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9"; // "bar"
        let date = "Mon, 07 Dec 2026 02:16:33 -0000";
        let authorization = "AWS4-HMAC-SHA256 Credential=reader/20261207/us-east-1/s3/aws4_request, SignedHeaders=date;host;x-amz-content-sha256, Signature=1b10242543082db524fae48458f2155dc87db6fbf9b9e2848ef7b6f6a8f1f70d";
        let mut h = headers(authorization, Some(date));
        assert_eq!(date_for_sigv4(&mut h), None);
        let amz = at(&h).expect("x-amz-date added").to_string();
        let auth = cistern_auth::sigv4::parse_authorization(authorization).expect("auth");
        let key = cistern_auth::sigv4::signing_key(
            &cistern_auth::Secret::new("reader-secret"),
            auth.date,
            auth.region,
            auth.service,
        );
        let verifies = |amz_date: &str, date: &str| {
            cistern_auth::sigv4::verify(
                &auth,
                &key,
                &cistern_auth::sigv4::Inbound {
                    method: "PUT",
                    encoded_path: "/data/foo",
                    canonical_query: "",
                    header_values: &[date, "127.0.0.1:9000", payload],
                    payload_sha256: payload,
                    amz_date,
                },
            )
        };
        assert!(verifies(&amz, date));
        // The signature covers that time: a second off, or another Date, and it fails.
        assert!(!verifies("20261207T021634Z", date));
        assert!(!verifies(&amz, "Mon, 07 Dec 2026 02:16:34 -0000"));
    }

    #[test]
    fn a_time_that_is_not_a_signed_valid_date_is_refused_as_s3_refuses_it() {
        let unsigned = SIGNED_DATE.replace("date;host", "host");
        for (auth, date) in [
            (SIGNED_DATE, Some("Bad Date")),
            (SIGNED_DATE, Some("")),
            (SIGNED_DATE, None),
            // Date present but outside the signature: its time could be replayed at will.
            (unsigned.as_str(), Some("Mon, 07 Dec 2026 02:16:33 GMT")),
            (unsigned.as_str(), None),
        ] {
            let mut h = headers(auth, date);
            let refused = date_for_sigv4(&mut h);
            assert_eq!(
                refused
                    .as_ref()
                    .map(|(s, c, m)| (s.as_u16(), *c, m.as_str())),
                Some((403, "AccessDenied", NO_DATE)),
                "{auth} {date:?}"
            );
            assert_eq!(at(&h), None);
        }
        let mut h = headers(SIGNED_DATE, Some("Mon, 07 Dec 2026 02:16:33 GMT"));
        h.append(
            http::header::DATE,
            http::HeaderValue::from_static("Mon, 07 Dec 2026 02:16:34 GMT"),
        );
        assert!(date_for_sigv4(&mut h).is_some(), "two Date headers");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_s3_ignores_is_dropped_only_where_no_signature_covers_it() {
        let run = |method: http::Method, hs: &[(&str, &str)], query: Option<&str>| {
            let mut h = http::HeaderMap::new();
            for (k, v) in hs {
                h.append(
                    http::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    http::HeaderValue::from_str(v).expect("value"),
                );
            }
            drop_ignored_range(&method, &mut h, query);
            h.contains_key(http::header::RANGE)
        };
        let multi = ("range", "bytes=0-1,5-6");
        let v4 = |signed: &'static str| {
            (
                "authorization",
                match signed {
                    "range" => "AWS4-HMAC-SHA256 Credential=a/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-date, Signature=ab",
                    _ => "AWS4-HMAC-SHA256 Credential=a/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=ab",
                },
            )
        };
        use http::Method;
        // Dropped: nothing signs it.
        assert!(!run(Method::GET, &[multi], None), "anonymous");
        assert!(
            !run(Method::HEAD, &[("range", "bytes=5-2")], None),
            "backwards"
        );
        assert!(
            !run(Method::GET, &[multi, v4("")], None),
            "header, unsigned"
        );
        assert!(
            !run(Method::GET, &[multi, ("authorization", "AWS a:b")], None),
            "SigV2"
        );
        let presigned =
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=host&X-Amz-Signature=ab";
        assert!(!run(Method::GET, &[multi], Some(presigned)), "presigned");
        // Kept: signed, or not one S3 ignores, or not a read.
        assert!(
            run(Method::GET, &[multi, v4("range")], None),
            "header, signed"
        );
        let signed = "X-Amz-SignedHeaders=host%3Brange&X-Amz-Signature=ab";
        assert!(
            run(Method::GET, &[multi], Some(signed)),
            "presigned, signed"
        );
        assert!(
            run(Method::GET, &[("range", "bytes=0-9")], None),
            "a plain range"
        );
        assert!(run(Method::PUT, &[multi], None), "not a read");
        assert!(
            run(Method::GET, &[multi, ("range", "bytes=0-1")], None),
            "two headers"
        );
    }
}
