//! Listing semantics for origins that can enumerate their keys in order (the `fs` origin):
//! prefix, delimiter roll-up, markers and continuation tokens, max-keys.

use base64::Engine as _;

use super::{ListCursor, ListEntry, ListPage, ListQuery};
use crate::error::{Error, ErrorKind, Result};

/// Encodes a resume position as an opaque continuation token.
pub fn encode_token(after: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after.as_bytes())
}

/// Decodes a continuation token made by [`encode_token`].
pub fn decode_token(token: &str) -> Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                "The continuation token provided is incorrect",
            )
        })
}

/// Builds one page from `entries`, which must be sorted by key (byte order) and already
/// restricted to keys that start with the query's prefix.
pub fn page(entries: impl IntoIterator<Item = ListEntry>, q: &ListQuery) -> Result<ListPage> {
    let after = match &q.cursor {
        ListCursor::V1 { marker } => marker.clone(),
        ListCursor::V2 {
            continuation: Some(t),
            ..
        } => Some(decode_token(t)?),
        ListCursor::V2 { start_after, .. } => start_after.clone(),
    };
    let mut out = ListPage::default();
    let mut count = 0usize;
    let mut last: Option<String> = None;
    for e in entries {
        if !e.key.starts_with(&q.prefix) {
            continue;
        }
        if let Some(a) = &after {
            if e.key.as_str() <= a.as_str() {
                continue;
            }
        }
        let rolled = q
            .delimiter
            .as_deref()
            .filter(|d| !d.is_empty())
            .and_then(|d| {
                e.key[q.prefix.len()..]
                    .find(d)
                    .map(|i| e.key[..q.prefix.len() + i + d.len()].to_string())
            });
        if let Some(cp) = rolled {
            // Keys under a common prefix already returned (or the resume point) are skipped.
            if out.common_prefixes.last() == Some(&cp) || after.as_deref() == Some(cp.as_str()) {
                continue;
            }
            if after.as_deref().is_some_and(|a| a.starts_with(cp.as_str())) {
                continue;
            }
            if count == q.max_keys {
                out.truncated = true;
                break;
            }
            out.common_prefixes.push(cp.clone());
            last = Some(cp);
        } else {
            if count == q.max_keys {
                out.truncated = true;
                break;
            }
            last = Some(e.key.clone());
            out.entries.push(e);
        }
        count += 1;
    }
    if out.truncated {
        out.next = match &q.cursor {
            ListCursor::V1 { .. } => last,
            ListCursor::V2 { .. } => last.map(|l| encode_token(&l)),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn entries(keys: &[&str]) -> Vec<ListEntry> {
        keys.iter()
            .map(|k| ListEntry {
                key: k.to_string(),
                size: 1,
                etag: "e".into(),
                last_modified: SystemTime::UNIX_EPOCH,
                owner: None,
            })
            .collect()
    }

    fn q(prefix: &str, delim: Option<&str>, max: usize, cursor: ListCursor) -> ListQuery {
        ListQuery {
            prefix: prefix.into(),
            delimiter: delim.map(Into::into),
            max_keys: max,
            cursor,
        }
    }

    const KEYS: &[&str] = &["a", "d/1", "d/2", "e/x/1", "f"];

    #[test]
    fn delimiter_rolls_up_and_pages_without_repeats() {
        let v1 = |m: Option<&str>| ListCursor::V1 {
            marker: m.map(Into::into),
        };
        let p = page(entries(KEYS), &q("", Some("/"), 2, v1(None))).expect("page");
        assert_eq!(p.entries.len(), 1);
        assert_eq!(p.common_prefixes, vec!["d/"]);
        assert!(p.truncated);
        assert_eq!(p.next.as_deref(), Some("d/"));
        let p2 = page(entries(KEYS), &q("", Some("/"), 2, v1(Some("d/")))).expect("page");
        assert_eq!(p2.common_prefixes, vec!["e/"]);
        assert_eq!(p2.entries[0].key, "f");
        assert!(!p2.truncated);
    }

    #[test]
    fn max_keys_zero_and_tokens() {
        let v2 = ListCursor::V2 {
            continuation: None,
            start_after: None,
        };
        let p = page(entries(KEYS), &q("", None, 0, v2.clone())).expect("page");
        assert!(p.entries.is_empty() && p.truncated);
        let p = page(entries(KEYS), &q("d/", None, 1, v2)).expect("page");
        assert_eq!(p.entries[0].key, "d/1");
        let token = p.next.expect("token");
        let p = page(
            entries(KEYS),
            &q(
                "d/",
                None,
                1,
                ListCursor::V2 {
                    continuation: Some(token),
                    start_after: None,
                },
            ),
        )
        .expect("page");
        assert_eq!(p.entries[0].key, "d/2");
        assert!(!p.truncated, "the last key does not claim more");
        assert!(decode_token("%%%").is_err());
    }
}
