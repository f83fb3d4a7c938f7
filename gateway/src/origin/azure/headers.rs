//! Blob headers both ways: object metadata read from Azure's answers, and the property and
//! metadata headers sent with a blob being written.

use std::time::SystemTime;

use cistern_cache::ObjectMeta;
use http::HeaderMap;

use crate::origin::wire::{header, unquote};
use crate::origin::PutOptions;

pub(super) fn http_time(v: Option<&str>) -> Option<SystemTime> {
    v.and_then(|v| httpdate::parse_http_date(v).ok())
}

/// Object metadata from Get Blob / Get Blob Properties headers; `size` is the blob's size.
pub(super) fn meta_from_headers(h: &HeaderMap, size: u64) -> ObjectMeta {
    let opt = |n: &str| header(h, n).map(str::to_owned);
    let mut user_metadata: Vec<(String, String)> = h
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix("x-ms-meta-")?;
            Some((name.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect();
    user_metadata.sort();
    ObjectMeta {
        size,
        etag: header(h, "etag").map(unquote).unwrap_or_default(),
        last_modified: http_time(header(h, "last-modified")).unwrap_or(SystemTime::UNIX_EPOCH),
        content_type: opt("content-type"),
        content_encoding: opt("content-encoding"),
        cache_control: opt("cache-control"),
        content_disposition: opt("content-disposition"),
        content_language: opt("content-language"),
        user_metadata,
        // On a ranged read the whole blob's MD5 is in x-ms-blob-content-md5.
        content_md5: opt("x-ms-blob-content-md5").or_else(|| {
            header(h, "content-range")
                .is_none()
                .then(|| opt("content-md5"))
                .flatten()
        }),
        created: http_time(header(h, "x-ms-creation-time")),
        origin_kind: opt("x-ms-blob-type"),
        origin_headers: ORIGIN_HEADERS
            .iter()
            .filter_map(|n| Some((n.to_string(), header(h, n)?.to_string())))
            .collect(),
        // A lease that is breaking, or held for a fixed time, ends by itself.
        volatile: header(h, "x-ms-lease-state") == Some("breaking")
            || header(h, "x-ms-lease-duration") == Some("fixed"),
    }
}

/// Response headers describing a blob that the Blob front returns as Azure sent them (through
/// Cistern a lease, tier or tag change forgets the cached copy; a lease that lapses on its own
/// shows once the metadata is revalidated).
const ORIGIN_HEADERS: &[&str] = &[
    "x-ms-lease-status",
    "x-ms-lease-state",
    "x-ms-lease-duration",
    "x-ms-blob-sequence-number",
    "x-ms-blob-committed-block-count",
    "x-ms-blob-sealed",
    "x-ms-server-encrypted",
    "x-ms-encryption-scope",
    "x-ms-access-tier",
    "x-ms-access-tier-inferred",
    "x-ms-access-tier-change-time",
    "x-ms-archive-status",
    "x-ms-tag-count",
    "x-ms-version-id",
    "x-ms-is-current-version",
    "x-ms-copy-id",
    "x-ms-copy-status",
    "x-ms-copy-source",
    "x-ms-copy-progress",
    "x-ms-copy-completion-time",
    "x-ms-immutability-policy-until-date",
    "x-ms-immutability-policy-mode",
    "x-ms-legal-hold",
    "x-ms-expiry-time",
    "x-ms-last-access-time",
];

/// `x-ms-blob-content-*` and cache control from the object's properties.
pub(super) fn content_headers(opts: &PutOptions) -> Vec<(String, String)> {
    [
        ("x-ms-blob-content-type", &opts.content_type),
        ("x-ms-blob-content-encoding", &opts.content_encoding),
        ("x-ms-blob-content-language", &opts.content_language),
        ("x-ms-blob-cache-control", &opts.cache_control),
        ("x-ms-blob-content-disposition", &opts.content_disposition),
    ]
    .into_iter()
    .filter_map(|(name, v)| Some((name.to_string(), v.clone()?)))
    .collect()
}

/// `x-ms-meta-*` from the object's user metadata.
pub(super) fn metadata_headers(opts: &PutOptions) -> Vec<(String, String)> {
    opts.user_metadata
        .iter()
        .map(|(k, v)| (format!("x-ms-meta-{k}"), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_become_metadata() {
        let mut h = HeaderMap::new();
        h.insert("etag", "\"0x8DBE5\"".parse().expect("hv"));
        h.insert(
            "last-modified",
            "Tue, 14 Nov 2023 22:13:20 GMT".parse().expect("hv"),
        );
        h.insert(
            "x-ms-creation-time",
            "Tue, 14 Nov 2023 22:13:20 GMT".parse().expect("hv"),
        );
        h.insert("x-ms-blob-type", "BlockBlob".parse().expect("hv"));
        h.insert("x-ms-meta-a_b", "1".parse().expect("hv"));
        h.insert(
            "content-md5",
            "1B2M2Y8AsgTpgAmY7PhCfg==".parse().expect("hv"),
        );
        let m = meta_from_headers(&h, 5);
        assert_eq!(m.etag, "0x8DBE5");
        assert_eq!(m.origin_kind.as_deref(), Some("BlockBlob"));
        assert_eq!(m.user_metadata, vec![("a_b".to_string(), "1".to_string())]);
        assert_eq!(m.content_md5.as_deref(), Some("1B2M2Y8AsgTpgAmY7PhCfg=="));
        assert!(m.created.is_some());
    }
}
