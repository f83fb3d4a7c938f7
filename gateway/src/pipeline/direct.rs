//! Reads of cache-only buckets: their "origin" is the cache cluster itself
//! ([`crate::origin::kv`]), so a read goes straight to the nodes that keep the object, past the
//! chunk and metadata caches (which would only hold a second copy).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use cistern_cache::{ObjectMeta, Tier};
use tokio::sync::mpsc;

use super::read::send_or_give_up;
use super::{Body, BucketBinding, CacheStatus, Conditions, ObjectRead, Pipeline, Selection};
use crate::error::{Error, Result};
use crate::origin::{single_part, PartInfo};

impl Pipeline {
    /// A cache-only object's metadata, with conditions evaluated.
    pub(super) async fn direct_head(
        &self,
        b: &BucketBinding,
        key: &str,
        part: Option<u32>,
        cond: &Conditions,
    ) -> Result<(Arc<ObjectMeta>, CacheStatus, Option<PartInfo>)> {
        let meta = b.origin.head(&b.origin_bucket, key).await?;
        cond.evaluate(&meta)?;
        let part = part.map(|n| single_part(&meta, n)).transpose()?;
        Ok((Arc::new(meta), CacheStatus::Hit, part))
    }

    /// A cache-only object or a range of it. A read with a known start fetches its first
    /// chunk's worth with the metadata in one request; the rest follows chunk by chunk, each
    /// read only from the version the first one found.
    pub(super) async fn direct_get(
        self: &Arc<Self>,
        b: &Arc<BucketBinding>,
        key: &str,
        sel: Selection,
        cond: &Conditions,
    ) -> Result<ObjectRead> {
        let cs = self.cfg.chunk_size.max(1);
        let start = match sel {
            Selection::All => Some(0),
            Selection::Range(spec) => spec.known_start(),
            Selection::Part(_) => None,
        };
        let (meta, first) = match start {
            Some(s) => {
                let end = (s / cs + 1).saturating_mul(cs);
                let r = b.origin.read(&b.origin_bucket, key, s..end, None).await?;
                (r.meta, Some((s, r.data)))
            }
            None => (b.origin.head(&b.origin_bucket, key).await?, None),
        };
        cond.evaluate(&meta)?;
        let (bytes, shown, parts_count): (Range<u64>, Option<Range<u64>>, Option<u32>) = match sel {
            Selection::All => (0..meta.size, None, None),
            Selection::Range(spec) => {
                let r = spec
                    .resolve(meta.size)
                    .map_err(|_| Error::invalid_range(meta.size))?;
                (r.clone(), Some(r), None)
            }
            Selection::Part(n) => {
                let p = single_part(&meta, n)?;
                (
                    p.range.clone(),
                    Some(p.range).filter(|r| !r.is_empty()),
                    p.parts_count,
                )
            }
        };
        // What the first read brought of the wanted bytes.
        let head = match first {
            Some((s, data)) if s == bytes.start => {
                let n = (bytes.end - bytes.start).min(data.len() as u64);
                data.slice(..usize::try_from(n).unwrap_or(usize::MAX))
            }
            _ => Bytes::new(),
        };
        self.metrics.cache_result.inc_by("hit", 1);
        self.count_served(Tier::Memory, head.len());
        let meta = Arc::new(meta);
        let done = bytes.start + head.len() as u64;
        if done >= bytes.end {
            return Ok(ObjectRead {
                meta,
                range: shown,
                parts_count,
                cache: CacheStatus::Hit,
                body: Body::ready(head),
            });
        }
        let (tx, rx) = mpsc::channel(2);
        let body = Body::channel(rx, bytes.end - bytes.start);
        let this = Arc::clone(self);
        let b = Arc::clone(b);
        let key = key.to_string();
        let etag = meta.etag.clone();
        let end = bytes.end;
        tokio::spawn(async move {
            if !head.is_empty() && !send_or_give_up(&tx, Ok(head)).await {
                return;
            }
            let mut at = done;
            while at < end {
                let next = (at / cs + 1).saturating_mul(cs).min(end);
                let piece = b
                    .origin
                    .read(&b.origin_bucket, &key, at..next, Some(&etag))
                    .await
                    .and_then(|r| {
                        if r.data.len() as u64 == next - at {
                            Ok(r.data)
                        } else {
                            Err(Error::new(
                                crate::error::ErrorKind::ObjectChanged,
                                "The object changed while it was read",
                            ))
                        }
                    });
                let failed = piece.is_err();
                if let Ok(p) = &piece {
                    this.count_served(Tier::Memory, p.len());
                }
                if !send_or_give_up(&tx, piece).await || failed {
                    return;
                }
                at = next;
            }
        });
        Ok(ObjectRead {
            meta,
            range: shown,
            parts_count,
            cache: CacheStatus::Hit,
            body,
        })
    }
}
