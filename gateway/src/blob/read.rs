//! Reads: Get Blob (ranges, `x-ms-range-get-content-md5`), the headers describing a blob,
//! and the parsing of read conditions and ranges.

use base64::Engine as _;
use bytes::BytesMut;
use cistern_cache::range::RangeSpec;
use cistern_cache::ObjectMeta;
use futures::TryStreamExt;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::error::BlobError;
use super::{header, quoted, set, xml, BlobBody, BlobFront, Reply};
use crate::pipeline::{Conditions, EtagMatch, Selection, CACHE_HEADER};

/// Ranges for which `x-ms-range-get-content-md5` may be asked (4 MiB, as Azure allows).
const MAX_MD5_RANGE: u64 = 4 << 20;

/// Parses `If-Match` / `If-None-Match`: `*` or a list of (quoted) ETags.
pub(super) fn etag_list(v: &str) -> EtagMatch {
    if v.split(',').any(|e| e.trim() == "*") {
        return EtagMatch::Any;
    }
    EtagMatch::OneOf(
        v.split(',')
            .map(|e| {
                let e = e.trim();
                e.strip_prefix("W/")
                    .unwrap_or(e)
                    .trim_matches('"')
                    .to_string()
            })
            .filter(|e| !e.is_empty())
            .collect(),
    )
}

/// The conditions of a read: as [`conditions`], but `If-None-Match: *` asks for a blob that
/// does not exist, which no read can return (Azure: `400 UnsatisfiableCondition`).
pub(super) fn read_conditions(h: &HeaderMap) -> Result<Conditions, BlobError> {
    let c = conditions(h);
    if c.if_none_match == Some(EtagMatch::Any) {
        return Err(BlobError::new(
            StatusCode::BAD_REQUEST,
            "UnsatisfiableCondition",
            "The request includes an unsatisfiable condition for this operation.",
        ));
    }
    Ok(c)
}

pub(super) fn conditions(h: &HeaderMap) -> Conditions {
    let date = |n| header(h, n).and_then(|v| httpdate::parse_http_date(v).ok());
    Conditions {
        if_match: header(h, "if-match").map(etag_list),
        if_none_match: header(h, "if-none-match").map(etag_list),
        if_modified_since: date("if-modified-since"),
        if_unmodified_since: date("if-unmodified-since"),
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n`.
pub(crate) fn parse_range(v: &str) -> Option<RangeSpec> {
    let spec = v.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        (false, false) => {
            let (first, last) = (a.parse().ok()?, b.parse().ok()?);
            (first <= last).then_some(RangeSpec::FromTo { first, last })
        }
        (false, true) => Some(RangeSpec::From {
            first: a.parse().ok()?,
        }),
        (true, false) => Some(RangeSpec::Suffix {
            len: b.parse().ok()?,
        }),
        (true, true) => None,
    }
}

/// The range a Get Blob asks for: `x-ms-range` wins over `Range`. A malformed `Range` is
/// ignored (the whole blob, as RFC 9110 and Azure do); a malformed `x-ms-range` is an error.
fn requested_range(h: &HeaderMap) -> Result<Option<RangeSpec>, BlobError> {
    if !h.contains_key("x-ms-range") {
        return Ok(header(h, "range").and_then(parse_range));
    }
    for name in ["x-ms-range", "range"] {
        if let Some(v) = h.get(name) {
            let v = v.to_str().ok().and_then(parse_range).ok_or_else(|| {
                BlobError::invalid_header(
                    if name == "range" {
                        "Range"
                    } else {
                        "x-ms-range"
                    },
                    "The value for one of the HTTP headers is not in the correct format.",
                )
            })?;
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Headers describing a blob, as Get Blob and Get Blob Properties send them.
pub(super) fn blob_headers(h: &mut HeaderMap, m: &ObjectMeta) {
    set(h, "last-modified", &xml::http_date(m.last_modified));
    set(h, "etag", &quoted(&m.etag));
    // An Azure blob may have no content type (Set Blob Properties clears it); other origins'
    // objects are typed as Azure types an upload that gives none.
    match (&m.content_type, &m.origin_kind) {
        (Some(t), _) => set(h, "content-type", t),
        (None, Some(_)) => {}
        (None, None) => set(h, "content-type", "application/octet-stream"),
    }
    for (name, v) in [
        ("content-encoding", &m.content_encoding),
        ("content-language", &m.content_language),
        ("cache-control", &m.cache_control),
        ("content-disposition", &m.content_disposition),
    ] {
        if let Some(v) = v {
            set(h, name, v);
        }
    }
    set(
        h,
        "x-ms-blob-type",
        m.origin_kind.as_deref().unwrap_or("BlockBlob"),
    );
    if let Some(c) = m.created {
        set(h, "x-ms-creation-time", &xml::http_date(c));
    }
    set(h, "x-ms-lease-status", "unlocked");
    set(h, "x-ms-lease-state", "available");
    set(h, "accept-ranges", "bytes");
    // An Azure origin's own word on leases, tiers, sequence numbers… (S3 origins' are x-amz-).
    for (k, v) in &m.origin_headers {
        if k.starts_with("x-ms-") {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                h.insert(k, v);
            }
        }
    }
    user_metadata(h, m);
}

pub(super) fn user_metadata(h: &mut HeaderMap, m: &ObjectMeta) {
    for (k, v) in &m.user_metadata {
        // Values from other dialects may hold bytes a header cannot; those are skipped.
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(format!("x-ms-meta-{k}").as_bytes()),
            HeaderValue::from_bytes(v.as_bytes()),
        ) {
            h.append(name, value);
        }
    }
}

fn md5_b64(data: &[u8]) -> String {
    use md5::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

impl BlobFront {
    pub(super) async fn get_blob(
        &self,
        container: &str,
        blob: &str,
        h: &HeaderMap,
    ) -> Result<Reply, BlobError> {
        let b = self.bucket(container).await?;
        let range = requested_range(h)?;
        let want_md5 =
            header(h, "x-ms-range-get-content-md5").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if want_md5 && range.is_none() {
            return Err(BlobError::invalid_header(
                "x-ms-range-get-content-md5",
                "x-ms-range-get-content-md5 needs a range.",
            ));
        }
        if let (true, Some(RangeSpec::FromTo { first, last })) = (want_md5, range) {
            if last - first >= MAX_MD5_RANGE {
                return Err(BlobError::new(
                    StatusCode::BAD_REQUEST,
                    "OutOfRangeInput",
                    "The requested range for x-ms-range-get-content-md5 is larger than 4 MiB.",
                ));
            }
        }
        let sel = range.map_or(Selection::All, Selection::Range);
        let read = self
            .pipeline
            .get(&b, blob, sel, &read_conditions(h)?)
            .await?;
        let meta = &read.meta;
        let mut headers = HeaderMap::new();
        blob_headers(&mut headers, meta);
        set(&mut headers, CACHE_HEADER, read.cache.as_str());
        let (status, length) = match &read.range {
            Some(rg) => {
                set(
                    &mut headers,
                    "content-range",
                    &format!("bytes {}-{}/{}", rg.start, rg.end - 1, meta.size),
                );
                if let Some(md5) = &meta.content_md5 {
                    set(&mut headers, "x-ms-blob-content-md5", md5);
                }
                (StatusCode::PARTIAL_CONTENT, rg.end - rg.start)
            }
            None => {
                if let Some(md5) = &meta.content_md5 {
                    set(&mut headers, "content-md5", md5);
                    set(&mut headers, "x-ms-blob-content-md5", md5);
                }
                (StatusCode::OK, meta.size)
            }
        };
        if want_md5 {
            if length > MAX_MD5_RANGE {
                return Err(BlobError::new(
                    StatusCode::BAD_REQUEST,
                    "OutOfRangeInput",
                    "The requested range for x-ms-range-get-content-md5 is larger than 4 MiB.",
                ));
            }
            // At most 4 MiB: gathered to hash before the headers go out.
            let mut buf = BytesMut::with_capacity(length as usize);
            let mut body = read.body;
            while let Some(chunk) = body.try_next().await? {
                buf.extend_from_slice(&chunk);
            }
            set(&mut headers, "content-md5", &md5_b64(&buf));
            return Ok(Reply {
                status,
                headers,
                body: BlobBody::Full(Some(buf.freeze())),
                length: Some(length),
            });
        }
        Ok(Reply {
            status,
            headers,
            body: BlobBody::Stream(read.body),
            length: Some(length),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-9"),
            Some(RangeSpec::FromTo { first: 0, last: 9 })
        );
        assert_eq!(parse_range("bytes=5-"), Some(RangeSpec::From { first: 5 }));
        assert_eq!(parse_range("bytes=-5"), Some(RangeSpec::Suffix { len: 5 }));
        assert_eq!(parse_range("bytes=9-0"), None);
        assert_eq!(parse_range("items=0-1"), None);
        assert_eq!(parse_range("bytes=-"), None);
        let mut h = HeaderMap::new();
        h.insert("range", HeaderValue::from_static("bytes=0-1"));
        h.insert("x-ms-range", HeaderValue::from_static("bytes=2-3"));
        assert_eq!(
            requested_range(&h).ok().flatten(),
            Some(RangeSpec::FromTo { first: 2, last: 3 })
        );
    }

    #[test]
    fn etag_lists() {
        assert_eq!(etag_list("*"), EtagMatch::Any);
        assert_eq!(
            etag_list("\"0x1\", W/\"0x2\""),
            EtagMatch::OneOf(vec!["0x1".into(), "0x2".into()])
        );
    }
}
