//! Object headers both ways: metadata and part placement read from S3's answers, and the
//! headers sent with an object being written.

use std::time::SystemTime;

use cistern_cache::ObjectMeta;
use http::{HeaderMap, StatusCode};

use crate::error::{Error, ErrorKind, Result};
use crate::origin::wire::{header, unquote};
use crate::origin::{PartInfo, PutOptions};

/// Reads object metadata from response headers; `size` is the object's full size.
pub(super) fn meta_from_headers(h: &HeaderMap, size: u64) -> ObjectMeta {
    let opt = |n: &str| header(h, n).map(str::to_owned);
    let mut user_metadata: Vec<(String, String)> = h
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix("x-amz-meta-")?;
            Some((name.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect();
    user_metadata.sort();
    ObjectMeta {
        size,
        etag: header(h, "etag").map(unquote).unwrap_or_default(),
        last_modified: header(h, "last-modified")
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH),
        content_type: opt("content-type"),
        content_encoding: opt("content-encoding"),
        cache_control: opt("cache-control"),
        content_disposition: opt("content-disposition"),
        content_language: opt("content-language"),
        user_metadata,
        origin_headers: ORIGIN_HEADERS
            .iter()
            .filter_map(|n| Some((n.to_string(), header(h, n)?.to_string())))
            .collect(),
        ..Default::default()
    }
}

/// Response headers describing a version that the S3 front returns as S3 sent them.
const ORIGIN_HEADERS: &[&str] = &[
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key-md5",
    "x-amz-version-id",
    "x-amz-tagging-count",
    "x-amz-storage-class",
    "x-amz-expiration",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
    "x-amz-replication-status",
    "x-amz-website-redirect-location",
    "x-amz-restore",
    "expires",
];

/// What a write's answer says of how the object is kept (server-side encryption, by request
/// or by the bucket's default).
pub(super) fn written_headers(h: &HeaderMap) -> Vec<(String, String)> {
    ORIGIN_HEADERS
        .iter()
        .filter(|n| n.starts_with("x-amz-server-side-encryption"))
        .filter_map(|n| Some((n.to_string(), header(h, n)?.to_string())))
        .collect()
}

/// The headers that describe an object being written.
pub(super) fn object_headers(opts: &PutOptions) -> Vec<(String, String)> {
    let mut owned = Vec::new();
    for (name, v) in [
        ("content-type", &opts.content_type),
        ("content-encoding", &opts.content_encoding),
        ("content-language", &opts.content_language),
        ("cache-control", &opts.cache_control),
        ("content-disposition", &opts.content_disposition),
    ] {
        if let Some(v) = v {
            owned.push((name.to_string(), v.clone()));
        }
    }
    for (k, v) in &opts.user_metadata {
        owned.push((format!("x-amz-meta-{k}"), v.clone()));
    }
    if let Some((k, v)) = &opts.checksum {
        if let Some(algo) = k.strip_prefix("x-amz-checksum-") {
            owned.push((
                "x-amz-sdk-checksum-algorithm".to_string(),
                algo.to_ascii_uppercase(),
            ));
        }
        owned.push((k.clone(), v.clone()));
    }
    owned
}

/// Reads a part's placement from a `HEAD ?partNumber=N` answer. S3 answers 206 with
/// `Content-Range` and `x-amz-mp-parts-count` (and 200 with the whole object for an object
/// uploaded in one piece, part 1). An origin that answers neither way (moto sends the part's
/// length and ETag without saying where the part lies) is not guessed at: `NotImplemented`.
pub(super) fn part_from_headers(status: StatusCode, h: &HeaderMap) -> Result<PartInfo> {
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        return Err(Error::new(
            ErrorKind::InvalidPartNumber,
            "The requested partnumber is not satisfiable",
        ));
    }
    let len: Option<u64> = header(h, "content-length").and_then(|v| v.parse().ok());
    let etag = header(h, "etag").map(unquote).unwrap_or_default();
    let parts_count = header(h, "x-amz-mp-parts-count").and_then(|v| v.parse().ok());
    let unknown = || {
        Error::new(
            ErrorKind::NotImplemented,
            "The origin does not report where parts lie",
        )
    };
    match (status, header(h, "content-range")) {
        (StatusCode::PARTIAL_CONTENT, Some(cr)) => {
            let spec = cr
                .trim()
                .strip_prefix("bytes ")
                .and_then(|r| r.split_once('/'));
            let (a, b) = spec
                .and_then(|(r, _)| r.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
                .filter(|(a, b)| a <= b)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::OriginUnavailable,
                        "The origin sent a bad Content-Range",
                    )
                })?;
            Ok(PartInfo {
                range: a..b + 1,
                parts_count,
                etag,
            })
        }
        (StatusCode::OK, None) if parts_count.is_none() && !etag.contains('-') => Ok(PartInfo {
            range: 0..len.ok_or_else(unknown)?,
            parts_count: None,
            etag,
        }),
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_part_placement_as_s3_sends_it() {
        let mut h = HeaderMap::new();
        h.insert("content-length", "8388608".parse().expect("hv"));
        h.insert(
            "content-range",
            "bytes 8388608-16777215/41943040".parse().expect("hv"),
        );
        h.insert("x-amz-mp-parts-count", "5".parse().expect("hv"));
        h.insert("etag", "\"abc-5\"".parse().expect("hv"));
        let p = part_from_headers(StatusCode::PARTIAL_CONTENT, &h).expect("part");
        assert_eq!(
            p,
            PartInfo {
                range: 8_388_608..16_777_216,
                parts_count: Some(5),
                etag: "abc-5".into()
            }
        );

        let mut single = HeaderMap::new();
        single.insert("content-length", "12".parse().expect("hv"));
        single.insert("etag", "\"d41d\"".parse().expect("hv"));
        assert_eq!(
            part_from_headers(StatusCode::OK, &single)
                .expect("single")
                .range,
            0..12
        );

        // moto: 200 with the part's length and the part's ETag, no range: never guessed.
        let mut moto = HeaderMap::new();
        moto.insert("content-length", "8388608".parse().expect("hv"));
        moto.insert("etag", "\"b3e0-5\"".parse().expect("hv"));
        assert_eq!(
            part_from_headers(StatusCode::OK, &moto)
                .expect_err("unknown")
                .kind(),
            ErrorKind::NotImplemented
        );
        assert_eq!(
            part_from_headers(StatusCode::RANGE_NOT_SATISFIABLE, &HeaderMap::new())
                .expect_err("416")
                .kind(),
            ErrorKind::InvalidPartNumber
        );
    }
}
