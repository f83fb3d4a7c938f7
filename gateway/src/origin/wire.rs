//! Helpers the HTTP origins share: header access, error-code extraction, and reading a body
//! into an aligned buffer.

use std::ops::Range;

use bytes::Bytes;
use cistern_cache::ObjectMeta;
use http::{HeaderMap, StatusCode};

use super::RangeRead;

use crate::error::{Error, ErrorKind, Result};

/// A request that failed before an answer: our own upload body's error when that is what
/// stopped it (a bad digest, a short body), else the origin could not be reached or timed out.
/// The URL (which may carry a SAS) is dropped before the error is kept.
pub(crate) fn send_failed(e: reqwest::Error) -> Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(ours) = c.downcast_ref::<Error>() {
            return ours.clone();
        }
        cause = c.source();
    }
    let kind = if e.is_timeout() {
        ErrorKind::OriginTimeout
    } else {
        ErrorKind::OriginUnavailable
    };
    Error::new(kind, "The origin could not be reached").with_source(e.without_url())
}

/// How an origin's error answer is classified by its status alone, for the codes the origin's
/// own classification does not name.
pub(crate) fn by_status(status: StatusCode) -> (ErrorKind, &'static str) {
    match status.as_u16() {
        412 => (ErrorKind::ObjectChanged, "The object changed at the origin"),
        401 | 403 => (ErrorKind::AccessDenied, "The origin refused access"),
        429 | 503 => (ErrorKind::Throttled, "The origin is throttling requests"),
        501 => (
            ErrorKind::NotImplemented,
            "The origin does not implement this",
        ),
        400..=499 => (
            ErrorKind::InvalidArgument,
            "The origin rejected the request",
        ),
        _ => (ErrorKind::OriginUnavailable, "The origin failed"),
    }
}

/// The error for an origin's error answer classified as `kind`, the answer kept as its source.
pub(crate) fn origin_error(
    (kind, msg): (ErrorKind, &'static str),
    dialect: super::Dialect,
    status: StatusCode,
    code: String,
) -> Error {
    Error::new(kind, msg).with_source(OriginStatus {
        dialect,
        status: status.as_u16(),
        code,
    })
}

/// A listing or other XML answer the origin sent that could not be read.
pub(crate) fn bad_xml(e: quick_xml::DeError) -> Error {
    Error::new(
        ErrorKind::OriginUnavailable,
        "The origin sent an unreadable listing",
    )
    .with_source(e)
}

/// An origin's own error answer, kept as the cause of the classified error: logged, and
/// relayed by the front of the same dialect where the classification would lose it (Azure's
/// `BlobIsSealed`, S3's `InvalidTag`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("origin answered {status} {code}")]
pub struct OriginStatus {
    /// The dialect the code belongs to.
    pub dialect: super::Dialect,
    /// HTTP status.
    pub status: u16,
    /// The error code (empty when the answer had none).
    pub code: String,
}

impl OriginStatus {
    /// The origin's answer behind `e`, when `e` is a client error the origin gave in `dialect`
    /// with a code of its own.
    pub fn relayable(e: &Error, dialect: super::Dialect) -> Option<&Self> {
        let o = e.source_as::<Self>()?;
        let kind = matches!(e.kind(), ErrorKind::InvalidArgument | ErrorKind::Leased);
        (kind && o.dialect == dialect && !o.code.is_empty() && (400..500).contains(&o.status))
            .then_some(o)
    }
}

/// A response body that broke off after the status (the URL, which may carry a SAS, dropped).
pub(crate) fn body_failed(e: reqwest::Error) -> Error {
    Error::new(
        ErrorKind::OriginUnavailable,
        "The origin's response broke off",
    )
    .with_source(e.without_url())
}

/// The `<Code>` of an XML error body (S3 and Azure both use it).
pub(crate) fn xml_code(body: &str) -> Option<String> {
    let start = body.find("<Code>")? + 6;
    let end = body[start..].find("</Code>")? + start;
    Some(body[start..end].to_string())
}

/// A header's value when it is valid text.
pub(crate) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `bytes first-last/size` (all numbers, `first <= last < size`).
pub(crate) fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let (span, size) = v.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let (first, last, size): (u64, u64, u64) =
        (first.parse().ok()?, last.parse().ok()?, size.parse().ok()?);
    (first <= last && last < size).then_some((first, last, size))
}

/// Collects the first `keep` bytes of a body of announced length `len` into a 4096-byte-aligned
/// buffer (see `fs::read_aligned`); the rest, if any, is dropped with the connection.
pub(crate) async fn collect_aligned(
    mut resp: reqwest::Response,
    len: usize,
    keep: usize,
) -> Result<Bytes> {
    let keep = keep.min(len);
    let mut buf = vec![0u8; keep + 4096];
    let pad = buf.as_ptr().align_offset(4096).min(4096);
    let mut pos = pad;
    let mut seen = 0usize;
    let broken = |e: reqwest::Error| {
        Error::new(
            ErrorKind::OriginUnavailable,
            "The origin's response broke off",
        )
        .with_source(e.without_url())
    };
    while pos < pad + keep {
        let Some(chunk) = resp.chunk().await.map_err(broken)? else {
            break;
        };
        seen += chunk.len();
        if seen > len {
            return Err(Error::new(
                ErrorKind::OriginUnavailable,
                "The origin sent more bytes than announced",
            ));
        }
        let take = chunk.len().min(pad + keep - pos);
        buf[pos..pos + take].copy_from_slice(&chunk[..take]);
        pos += take;
    }
    if pos != pad + keep {
        return Err(Error::new(
            ErrorKind::OriginUnavailable,
            "The origin sent fewer bytes than announced",
        ));
    }
    Ok(Bytes::from(buf).slice(pad..pad + keep))
}

/// An ETag without its quotes (and weak marker).
pub(crate) fn unquote(etag: &str) -> String {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    e.trim_matches('"').to_string()
}

/// A small answer's body as text.
pub(crate) async fn read_text(resp: reqwest::Response) -> Result<String> {
    resp.text().await.map_err(|e| {
        Error::new(
            ErrorKind::OriginUnavailable,
            "The origin's response broke off",
        )
        .with_source(e.without_url())
    })
}

/// The bytes and metadata of a ranged GET answered 200 or 206 (`meta_of` reads the
/// dialect's headers given the object's full size). The ETag must still be `if_match`'s. A
/// 200 means the origin ignored the range: from the start of the object the wanted prefix is
/// kept and the rest dropped; anywhere else it would mean downloading everything before the
/// range for every chunk, so it is refused.
pub(crate) async fn ranged_answer(
    resp: reqwest::Response,
    range: Range<u64>,
    if_match: Option<&str>,
    meta_of: impl FnOnce(&HeaderMap, u64) -> ObjectMeta,
) -> Result<RangeRead> {
    let status = resp.status();
    let h = resp.headers();
    let len: usize = header(h, "content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::OriginUnavailable,
                "The origin sent no Content-Length",
            )
        })?;
    let size = if status == StatusCode::PARTIAL_CONTENT {
        // The bytes must be the ones asked for: a proxy or origin answering another range
        // would otherwise put them in the wrong place of the cached chunk.
        let bad = || {
            Error::new(
                ErrorKind::OriginUnavailable,
                "The origin sent a bad Content-Range",
            )
        };
        let (first, last, size) = header(h, "content-range")
            .and_then(parse_content_range)
            .ok_or_else(bad)?;
        if first != range.start || last + 1 != range.end.min(size) || last + 1 - first != len as u64
        {
            return Err(bad());
        }
        size
    } else {
        len as u64
    };
    let meta = meta_of(h, size);
    if if_match.is_some_and(|m| m != meta.etag) {
        return Err(changed());
    }
    let keep = if status == StatusCode::OK {
        if range.start > 0 && size > 0 {
            return Err(Error::new(
                ErrorKind::NotImplemented,
                "The origin ignores Range requests",
            ));
        }
        range.end.min(size) as usize
    } else {
        len
    };
    let data = collect_aligned(resp, len, keep).await?;
    Ok(RangeRead { meta, data })
}

/// The object changed at the origin while it was read.
pub(crate) fn changed() -> Error {
    Error::new(ErrorKind::ObjectChanged, "The object changed at the origin")
}

/// Owned header names and values as the pairs the clients' senders take.
pub fn header_pairs(owned: &[(String, String)]) -> Vec<(&str, &str)> {
    owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// `body` with the whitespace inside the elements `tags` (keys, blob names) written as character
/// references, which the XML deserializer (it trims text before decoding it) keeps: a key
/// `"a "` stays `"a "`.
pub(crate) fn keep_spaces<'a>(body: &'a str, tags: &[&str]) -> std::borrow::Cow<'a, str> {
    if !tags.iter().any(|t| body.contains(&format!("<{t}>"))) {
        return std::borrow::Cow::Borrowed(body);
    }
    let mut out = String::with_capacity(body.len() + 64);
    let mut rest = body;
    'scan: while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        for tag in tags {
            let Some(text_start) = after.strip_prefix(tag).and_then(|t| t.strip_prefix('>')) else {
                continue;
            };
            let close = format!("</{tag}>");
            let Some(end) = text_start.find(&close) else {
                continue;
            };
            let text = &text_start[..end];
            out.push_str(&rest[..open]);
            out.push('<');
            out.push_str(tag);
            out.push('>');
            for c in text.chars() {
                match c {
                    ' ' | '\t' | '\n' | '\r' => out.push_str(&format!("&#{};", c as u32)),
                    c => out.push(c),
                }
            }
            out.push_str(&close);
            rest = &text_start[end + close.len()..];
            continue 'scan;
        }
        out.push_str(&rest[..=open]);
        rest = after;
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}
