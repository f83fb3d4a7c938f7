//! A cache-only bucket's listing: each node's page of what it holds, and their merge.

use std::time::Instant;

use cistern_cache::KvStore;

use crate::error::Result;
use crate::origin::{listing, ListCursor, ListEntry, ListPage, ListQuery};

/// This node's page of a cache-only namespace's listing.
pub fn local_page(kv: &KvStore, space: &str, q: &ListQuery) -> Result<ListPage> {
    let after = match &q.cursor {
        ListCursor::V1 { marker } => marker.as_deref(),
        ListCursor::V2 { start_after, .. } => start_after.as_deref(),
    };
    let entries = kv
        .list(space, &q.prefix, after, Instant::now())
        .into_iter()
        .map(|(k, m)| ListEntry {
            key: k.to_string(),
            size: m.size,
            etag: m.etag.clone(),
            last_modified: m.last_modified,
            owner: None,
        });
    listing::page(entries, q)
}

/// Merges the nodes' pages of one listing into one page of at most `max` items (keys and
/// common prefixes). A truncated node page is complete only up to its last item, so nothing
/// past the earliest such item is returned; a key held by several replicas appears once.
pub(super) fn merge_pages(pages: Vec<ListPage>, max: usize) -> ListPage {
    let bound: Option<String> = pages
        .iter()
        .filter(|p| p.truncated)
        .filter_map(|p| {
            let last_key = p.entries.last().map(|e| e.key.clone());
            let last_prefix = p.common_prefixes.last().cloned();
            last_key.max(last_prefix)
        })
        .min();
    let mut truncated = pages.iter().any(|p| p.truncated);
    let mut entries: Vec<ListEntry> = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    for p in pages {
        entries.extend(p.entries);
        prefixes.extend(p.common_prefixes);
    }
    // The newest copy of each key first, then one per key.
    entries.sort_by(|a, b| {
        a.key
            .cmp(&b.key)
            .then(b.last_modified.cmp(&a.last_modified))
    });
    entries.dedup_by(|a, b| a.key == b.key);
    prefixes.sort();
    prefixes.dedup();
    let within = |k: &str| bound.as_deref().is_none_or(|b| k <= b);
    let mut out = ListPage::default();
    let (mut ei, mut pi) = (0, 0);
    let mut last = None;
    loop {
        let next_is_entry = match (entries.get(ei), prefixes.get(pi)) {
            (Some(e), Some(p)) => e.key.as_str() < p.as_str(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let item = if next_is_entry {
            entries[ei].key.clone()
        } else {
            prefixes[pi].clone()
        };
        if !within(&item) {
            truncated = true;
            break;
        }
        if out.entries.len() + out.common_prefixes.len() == max {
            truncated = true;
            break;
        }
        if next_is_entry {
            out.entries.push(entries[ei].clone());
            ei += 1;
        } else {
            out.common_prefixes.push(prefixes[pi].clone());
            pi += 1;
        }
        last = Some(item);
    }
    out.truncated = truncated;
    if out.truncated {
        out.next = last;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::ListEntry;
    use std::time::SystemTime;

    fn page(keys: &[&str], prefixes: &[&str], truncated: bool) -> ListPage {
        ListPage {
            entries: keys
                .iter()
                .map(|k| ListEntry {
                    key: k.to_string(),
                    size: 1,
                    etag: "e".into(),
                    last_modified: SystemTime::UNIX_EPOCH,
                    owner: None,
                })
                .collect(),
            common_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            truncated,
            next: None,
        }
    }

    fn keys(p: &ListPage) -> Vec<String> {
        p.entries.iter().map(|e| e.key.clone()).collect()
    }

    #[test]
    fn merged_pages_stop_at_the_earliest_truncated_node_and_dedupe_replicas() {
        // Node A was cut after "b" (it may hold "b1"): nothing past "b" is certain.
        let m = merge_pages(
            vec![page(&["a", "b"], &[], true), page(&["a", "c"], &[], false)],
            10,
        );
        assert_eq!(keys(&m), ["a", "b"]);
        assert!(m.truncated);
        assert_eq!(m.next.as_deref(), Some("b"));
        // Complete pages merge whole, up to max.
        let m = merge_pages(
            vec![
                page(&["a", "d"], &["p/"], false),
                page(&["b", "d"], &[], false),
            ],
            10,
        );
        assert_eq!(keys(&m), ["a", "b", "d"]);
        assert_eq!(m.common_prefixes, ["p/"]);
        assert!(!m.truncated && m.next.is_none());
        let m = merge_pages(
            vec![
                page(&["a", "d"], &["p/"], false),
                page(&["b", "d"], &[], false),
            ],
            2,
        );
        assert_eq!(keys(&m), ["a", "b"]);
        assert_eq!(m.next.as_deref(), Some("b"));
        // A truncated node whose bound is this page's last item: still truncated.
        let m = merge_pages(vec![page(&["a"], &[], true)], 1);
        assert!(m.truncated);
        assert_eq!(m.next.as_deref(), Some("a"));
    }
}
