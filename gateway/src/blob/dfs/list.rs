//! List Paths (`GET /fs?resource=filesystem&recursive=…`) over a flat listing: directories
//! come from folder markers (`dir/`), from common prefixes (not recursive), and, in a recursive
//! listing, from the paths beneath them, each named once, across pages too.

use base64::Engine as _;
use http::StatusCode;

use super::super::error::BlobError;
use super::super::{get, set, xml, BlobFront, Reply};
use super::{json_reply, PERMISSIONS_DIR, PERMISSIONS_FILE};
use crate::origin::{ListCursor, ListEntry, ListQuery};
use crate::pipeline::BucketBinding;

/// The most paths one page holds (Azure's limit too).
const MAX_RESULTS: usize = 5000;

/// `maxResults`: 1 to 5000 (larger asks get 5000), default 5000.
pub(super) fn max_results(q: &[(String, String)]) -> Result<usize, BlobError> {
    match get(q, "maxResults").or_else(|| get(q, "maxresults")) {
        None => Ok(MAX_RESULTS),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => Ok((n as usize).min(MAX_RESULTS)),
            _ => Err(BlobError::invalid_query(
                "maxResults",
                v,
                "One of the query parameters specified in the request URI is outside the permissible range.",
            )),
        },
    }
}

/// A continuation token: the last key a page looked at (so a recursive listing does not name a
/// directory twice) and the origin's own token.
fn encode_token(last: &str, origin: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::json!([last, origin]).to_string())
}

fn decode_token(token: &str) -> Result<(String, String), BlobError> {
    let bad = || {
        BlobError::invalid_query(
            "continuation",
            token,
            "The continuation token is not one Cistern gave.",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let (last, origin): (String, String) = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok((last, origin))
}

fn file_json(e: &ListEntry) -> serde_json::Value {
    serde_json::json!({
        "name": e.key,
        "contentLength": e.size.to_string(),
        "etag": e.etag,
        "lastModified": xml::http_date(e.last_modified),
        "owner": super::OWNER,
        "group": super::OWNER,
        "permissions": PERMISSIONS_FILE,
    })
}

fn dir_json(name: &str, marker: Option<&ListEntry>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "name": name,
        "isDirectory": "true",
        "contentLength": "0",
        "owner": super::OWNER,
        "group": super::OWNER,
        "permissions": PERMISSIONS_DIR,
    });
    if let Some(m) = marker {
        v["etag"] = m.etag.clone().into();
        v["lastModified"] = xml::http_date(m.last_modified).into();
    }
    v
}

/// The directories between `prefix` and `key` (exclusive of `key` itself) that `prev`, the key
/// listed before it, did not already lie in.
fn new_ancestors<'a>(prefix: &str, key: &'a str, prev: &str) -> Vec<&'a str> {
    key[prefix.len()..]
        .match_indices('/')
        .map(|(i, _)| &key[..prefix.len() + i])
        .filter(|dir| {
            // `dir` was named already when the previous key lay inside it (or was its marker).
            !(prev.len() > dir.len() && prev.starts_with(dir) && prev.as_bytes()[dir.len()] == b'/')
        })
        .collect()
}

impl BlobFront {
    pub(super) async fn list_paths(
        &self,
        fs: &str,
        q: &[(String, String)],
    ) -> Result<Reply, BlobError> {
        let recursive = match get(q, "recursive") {
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                return Err(BlobError::invalid_query(
                    "recursive",
                    v,
                    "The value of recursive must be true or false.",
                ))
            }
            None => {
                return Err(BlobError::new(
                    StatusCode::BAD_REQUEST,
                    "MissingRequiredQueryParameter",
                    "A query parameter that's mandatory for this request is not specified.",
                )
                .with_detail("QueryParameterName", "recursive"))
            }
        };
        let max = max_results(q)?;
        let dir = get(q, "directory").unwrap_or("").trim_matches('/');
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let (mut prev, origin_token) = match get(q, "continuation").filter(|c| !c.is_empty()) {
            Some(t) => {
                let (last, origin) = decode_token(t)?;
                (last, Some(origin))
            }
            None => (String::new(), None),
        };
        let b = self.bucket(fs).await?;
        let first_page = origin_token.is_none();
        let page = self
            .pipeline
            .list(
                &b,
                &ListQuery {
                    prefix: prefix.clone(),
                    delimiter: (!recursive).then(|| "/".to_string()),
                    max_keys: max,
                    cursor: ListCursor::V2 {
                        continuation: origin_token,
                        start_after: None,
                    },
                },
            )
            .await?;
        if first_page
            && !dir.is_empty()
            && page.entries.is_empty()
            && page.common_prefixes.is_empty()
            && !self.is_folder(&b, dir).await?
        {
            return Err(super::error::path_not_found());
        }
        // (name, entry) in name order; directories from markers, prefixes and ancestors.
        let mut out: Vec<(String, serde_json::Value)> = Vec::new();
        for e in &page.entries {
            if e.key == prefix || e.key.starts_with(super::lease::LEASES) {
                continue; // the listed directory's own marker, or a lease record
            }
            // A marker (`dir/`) names its directory; it sorts before everything inside.
            let (name, marker) = match e.key.strip_suffix('/') {
                Some(d) => (d, true),
                None => (e.key.as_str(), false),
            };
            if recursive {
                for a in new_ancestors(&prefix, name, &prev) {
                    out.push((a.to_string(), dir_json(a, None)));
                }
            }
            match (marker, recursive) {
                (true, true) => out.push((name.to_string(), dir_json(name, Some(e)))),
                (true, false) => {} // also a common prefix
                (false, _) => out.push((e.key.clone(), file_json(e))),
            }
            prev.clone_from(&e.key);
        }
        for p in &page.common_prefixes {
            let d = p.trim_end_matches('/');
            if !d.is_empty() && p != super::lease::LEASES {
                out.push((d.to_string(), dir_json(d, None)));
            }
            if p.as_str() > prev.as_str() {
                prev.clone_from(p);
            }
        }
        if !recursive {
            out.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let paths: Vec<_> = out.into_iter().map(|(_, v)| v).collect();
        let mut reply = json_reply(&serde_json::json!({ "paths": paths }));
        if let (true, Some(next)) = (page.truncated, page.next.as_deref()) {
            set(
                &mut reply.headers,
                "x-ms-continuation",
                &encode_token(&prev, next),
            );
        }
        Ok(reply)
    }

    /// Whether `dir` is a directory: a folder marker, or any path beneath it.
    pub(super) async fn is_folder(&self, b: &BucketBinding, dir: &str) -> Result<bool, BlobError> {
        Ok(self.folder_marker(b, dir).await?.is_some() || self.has_children(b, dir).await?)
    }

    /// Whether any object lies beneath `dir` (its own marker aside).
    pub(super) async fn has_children(
        &self,
        b: &BucketBinding,
        dir: &str,
    ) -> Result<bool, BlobError> {
        let prefix = format!("{dir}/");
        let page = self.page_under(b, &prefix, None, 2).await?;
        Ok(page.entries.iter().any(|e| e.key != prefix))
    }

    /// A page of at most `max` keys (no delimiter) starting with `prefix`, from an origin
    /// continuation token.
    pub(super) async fn page_under(
        &self,
        b: &BucketBinding,
        prefix: &str,
        continuation: Option<String>,
        max: usize,
    ) -> Result<crate::origin::ListPage, BlobError> {
        let q = ListQuery {
            prefix: prefix.to_string(),
            delimiter: None,
            max_keys: max,
            cursor: ListCursor::V2 {
                continuation,
                start_after: None,
            },
        };
        Ok(self.pipeline.list(b, &q).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_named_once_across_keys_and_pages() {
        assert_eq!(new_ancestors("", "a/b/c", ""), vec!["a", "a/b"]);
        assert_eq!(new_ancestors("", "a/b/d", "a/b/c"), Vec::<&str>::new());
        assert_eq!(new_ancestors("", "a/e/f", "a/b/c"), vec!["a/e"]);
        assert_eq!(new_ancestors("", "a/x", "a/"), Vec::<&str>::new());
        assert_eq!(new_ancestors("", "ab/x", "a/b"), vec!["ab"]);
        assert_eq!(new_ancestors("d/", "d/x/y", ""), vec!["d/x"]);
        assert_eq!(new_ancestors("", "top", ""), Vec::<&str>::new());
    }

    #[test]
    fn tokens_round_trip_and_foreign_ones_are_refused() {
        let t = encode_token("a/b", "origin-token==");
        assert_eq!(
            decode_token(&t).expect("ours"),
            ("a/b".to_string(), "origin-token==".to_string())
        );
        assert!(decode_token("not a token").is_err());
    }
}
