//! Object reads: what a read selects and answers (`Selection`, `CacheStatus`, `ObjectRead`,
//! `Body`), HEAD, and GET with its first chunk read before answering and bounded read-ahead.

use std::collections::VecDeque;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cistern_cache::range::{chunk_spans, ChunkSpan, RangeSpec};
use cistern_cache::{ObjectMeta, Served, Tier};
use futures::stream::FuturesOrdered;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::budget::{Grant, Held};
use super::chunk::{chunk_len, sliced};
use super::peers::Node;
use super::{BucketBinding, Conditions, Pipeline};
use crate::error::{Error, ErrorKind, Result};
use crate::origin::PartInfo;

/// Which bytes of an object a read wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The whole object.
    All,
    /// A byte range.
    Range(RangeSpec),
    /// One part of a multipart object (1-based), where the origin knows parts.
    Part(u32),
}

/// The response header telling what the cache did, in both dialects.
pub const CACHE_HEADER: &str = "x-cistern-cache";

/// What the cache did for one read (the `x-cistern-cache` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Everything came from the cache; the origin was not contacted for bytes.
    Hit,
    /// Everything came from the origin.
    Miss,
    /// Some chunks were cached, some fetched.
    Partial,
    /// The cache was not used.
    Bypass,
}

impl CacheStatus {
    /// The header value and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Partial => "partial",
            Self::Bypass => "bypass",
        }
    }
}

/// An object read in progress: headers are known, the body streams.
pub struct ObjectRead {
    /// The version being served.
    pub meta: Arc<ObjectMeta>,
    /// The byte range served, or `None` for the whole object.
    pub range: Option<Range<u64>>,
    /// For part reads: how many parts the object has, when the origin says.
    pub parts_count: Option<u32>,
    /// What the cache did.
    pub cache: CacheStatus,
    /// The body.
    pub body: Body,
}

/// A body of known length: one slice already in hand (a read within one chunk: no task, no
/// channel), or a stream fed by a bounded channel from a producer task (the channel is the
/// backpressure).
pub struct Body {
    source: Source,
    remaining: u64,
}

enum Source {
    Ready(Option<Bytes>),
    Channel(mpsc::Receiver<Result<Bytes>>),
}

impl Body {
    /// Bytes not yet yielded.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    pub(super) fn ready(b: Bytes) -> Self {
        Self {
            remaining: b.len() as u64,
            source: Source::Ready(Some(b).filter(|b| !b.is_empty())),
        }
    }
}

impl Body {
    /// A body of `len` bytes fed by `rx`.
    pub(super) fn channel(rx: mpsc::Receiver<Result<Bytes>>, len: u64) -> Self {
        Self {
            source: Source::Channel(rx),
            remaining: len,
        }
    }
}

impl Stream for Body {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let polled = match &mut this.source {
            Source::Ready(b) => Poll::Ready(b.take().map(Ok)),
            Source::Channel(rx) => rx.poll_recv(cx),
        };
        match polled {
            Poll::Ready(Some(Ok(b))) => {
                this.remaining = this.remaining.saturating_sub(b.len() as u64);
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) if this.remaining > 0 => Poll::Ready(Some(Err(Error::new(
                ErrorKind::Internal,
                "the body ended early",
            )))),
            other => other,
        }
    }
}

impl Pipeline {
    /// Object metadata, with conditions evaluated; for a part, where it lies.
    pub async fn head(
        &self,
        b: &BucketBinding,
        key: &str,
        part: Option<u32>,
        cond: &Conditions,
    ) -> Result<(Arc<ObjectMeta>, CacheStatus, Option<PartInfo>)> {
        if b.cache_only {
            return self.direct_head(b, key, part, cond).await;
        }
        let key: Arc<str> = Arc::from(key);
        let (fill, cold) = self.metadata(b, &key, None).await?;
        cond.evaluate(&fill.meta)?;
        let part = match part {
            Some(n) => Some(self.part(b, &key, &fill.meta, n).await?),
            None => None,
        };
        let status = if cold {
            CacheStatus::Miss
        } else {
            CacheStatus::Hit
        };
        Ok((fill.meta, status, part))
    }

    /// Reads an object or a range of it. If the object changes at the origin before the first
    /// byte is sent, metadata is refreshed and the read retried once.
    pub async fn get(
        self: &Arc<Self>,
        b: &Arc<BucketBinding>,
        key: &str,
        sel: Selection,
        cond: &Conditions,
    ) -> Result<ObjectRead> {
        self.top.touch(&format!("{}/{key}", b.name));
        if b.cache_only {
            return self.direct_get(b, key, sel, cond).await;
        }
        let key: Arc<str> = Arc::from(key);
        match self.try_get(b, &key, sel, cond).await {
            Err(e) if e.kind() == ErrorKind::ObjectChanged => {
                tracing::debug!(bucket = %b.name, key = %key, "object changed at the origin, retrying once");
                self.forget(b, &key).await;
                self.try_get(b, &key, sel, cond).await
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // Gone at the origin while cached metadata still named it: forget it now
                // rather than at the end of the TTL (here; an owner that fetched forgot it).
                self.meta.invalidate(&self.meta_key(b, &key));
                Err(e)
            }
            other => other,
        }
    }

    async fn try_get(
        self: &Arc<Self>,
        b: &Arc<BucketBinding>,
        key: &Arc<str>,
        sel: Selection,
        cond: &Conditions,
    ) -> Result<ObjectRead> {
        let start = Instant::now();
        let cs = self.cfg.chunk_size;
        let want = match sel {
            Selection::All => Some(0),
            Selection::Range(spec) => spec.known_start().map(|s| s / cs),
            Selection::Part(_) => None,
        };
        let (fill, cold) = self.metadata(b, key, want).await?;
        let meta = fill.meta;
        cond.evaluate(&meta)?;
        let (bytes, shown_range, parts_count) = match sel {
            Selection::All => (0..meta.size, None, None),
            Selection::Range(spec) => {
                let r = spec
                    .resolve(meta.size)
                    .map_err(|_| Error::invalid_range(meta.size))?;
                (r.clone(), Some(r), None)
            }
            Selection::Part(n) => {
                let p = self.part(b, key, &meta, n).await?;
                (
                    p.range.clone(),
                    Some(p.range).filter(|r| !r.is_empty()),
                    p.parts_count,
                )
            }
        };
        if bytes.is_empty() {
            self.metrics.cache_result.inc_by("hit", 1);
            return Ok(ObjectRead {
                meta,
                range: shown_range,
                parts_count,
                cache: if cold {
                    CacheStatus::Miss
                } else {
                    CacheStatus::Hit
                },
                body: Body::ready(Bytes::new()),
            });
        }
        let etag: Arc<str> = Arc::from(meta.etag.as_str());
        let spans: Vec<_> = chunk_spans(bytes.clone(), cs).collect();
        let one_chunk = spans.len() == 1;
        let status = if cold {
            CacheStatus::Miss
        } else if one_chunk {
            // Told by the read itself (below): the origin's bytes make it a miss.
            CacheStatus::Hit
        } else {
            let resident = spans
                .iter()
                .filter(|s| self.probably_cached(&self.chunk_key(b, key, &etag, s.index)))
                .count();
            match resident {
                n if n == spans.len() => CacheStatus::Hit,
                0 => CacheStatus::Miss,
                _ => CacheStatus::Partial,
            }
        };
        // The first bytes are read before answering, so that errors (a vanished or changed
        // object, an unreachable origin) become proper error responses.
        let held = Arc::new(Held::default());
        let mut pending: VecDeque<ChunkSpan> = spans.into();
        let first = pending[0];
        let (first_served, first_permit) = match fill.chunk {
            Some((i, data)) if i == first.index => {
                pending.pop_front();
                let served = Served {
                    data,
                    tier: Tier::Origin,
                    coalesced: false,
                };
                (sliced(served, first)?, None)
            }
            _ => {
                let grant = self
                    .admit(b, key, &etag, meta.size, first, &held, true)
                    .await
                    .unwrap_or(Grant {
                        span: first,
                        permit: None,
                    });
                advance(&mut pending, grant.span);
                match self.chunk(b, key, &etag, meta.size, grant.span, true).await {
                    Ok(s) => (s, grant.permit),
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        // Gone at the origin while the owner's metadata still names it.
                        self.forget(b, key).await;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        // An owner elsewhere that had to fill from the origin makes this at best partial.
        let status = match (status, first_served.tier) {
            (CacheStatus::Hit, Tier::Origin) if one_chunk => CacheStatus::Miss,
            (CacheStatus::Hit, Tier::Origin) => CacheStatus::Partial,
            (s, _) => s,
        };
        self.metrics.cache_result.inc_by(status.as_str(), 1);
        self.metrics
            .first_byte_seconds
            .observe(start.elapsed().as_secs_f64());
        self.count_served(first_served.tier, first_served.data.len());
        let first_bytes = frame(&held, first_served, first_permit);

        if pending.is_empty() {
            return Ok(ObjectRead {
                meta,
                range: shown_range,
                parts_count,
                cache: status,
                body: Body::ready(first_bytes),
            });
        }
        let (tx, rx) = mpsc::channel(2);
        let body = Body {
            source: Source::Channel(rx),
            remaining: bytes.end - bytes.start,
        };
        let this = Arc::clone(self);
        let b = Arc::clone(b);
        let key = Arc::clone(key);
        let size = meta.size;
        tokio::spawn(async move {
            if !send_or_give_up(&tx, Ok(first_bytes)).await {
                return;
            }
            // Up to `readahead` reads in flight, each admitted by the response budget.
            let readahead = this.cfg.readahead.max(1);
            let mut inflight = FuturesOrdered::new();
            let mut last_index = Some(first.index);
            loop {
                while inflight.len() < readahead {
                    let Some(&span) = pending.front() else { break };
                    let wait = inflight.is_empty();
                    let Some(grant) = this.admit(&b, &key, &etag, size, span, &held, wait).await
                    else {
                        break;
                    };
                    advance(&mut pending, grant.span);
                    let fresh = last_index != Some(grant.span.index);
                    last_index = Some(grant.span.index);
                    let (this, b, key, etag) = (
                        Arc::clone(&this),
                        Arc::clone(&b),
                        Arc::clone(&key),
                        Arc::clone(&etag),
                    );
                    // Spawned, so that a read finishes (and frees its SSD read slot) while
                    // this stream waits on a slow client.
                    inflight.push_back(tokio::spawn(async move {
                        let served = this.chunk(&b, &key, &etag, size, grant.span, fresh).await?;
                        Ok::<_, Error>((served, grant.permit))
                    }));
                }
                let Some(item) = inflight.next().await else {
                    return;
                };
                let item = item.unwrap_or_else(|e| {
                    Err(Error::new(
                        ErrorKind::Internal,
                        format!("chunk read failed: {e}"),
                    ))
                });
                let msg = match item {
                    Ok((served, permit)) => {
                        this.count_served(served.tier, served.data.len());
                        Ok(frame(&held, served, permit))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "object stream failed after headers were sent");
                        if e.kind() == ErrorKind::ObjectChanged {
                            // This response is lost (its headers named the old version), but
                            // the next read must not be: forget the stale metadata now rather
                            // than at the end of its TTL.
                            this.forget(&b, &key).await;
                        }
                        Err(e)
                    }
                };
                let stop = msg.is_err();
                if !send_or_give_up(&tx, msg).await || stop {
                    return;
                }
            }
        });
        Ok(ObjectRead {
            meta,
            range: shown_range,
            parts_count,
            cache: status,
            body,
        })
    }

    /// Admits reading `span` under the response budget: at once when it is small or in RAM.
    /// Part of a chunk that is not in RAM and lives here is read a step (256 KiB) at a time
    /// (each step one SSD read, sent as it comes, never copied into one buffer); a whole chunk
    /// is read whole, and comes back into RAM.
    #[allow(clippy::too_many_arguments)]
    async fn admit(
        &self,
        b: &BucketBinding,
        key: &Arc<str>,
        etag: &Arc<str>,
        size: u64,
        span: ChunkSpan,
        held: &Held,
        wait: bool,
    ) -> Option<Grant> {
        if let Some(g) = self.budget.small(span, held, wait) {
            return Some(g);
        }
        let ck = self.chunk_key(b, key, etag, span.index);
        if self.store.in_memory(&ck) {
            return Some(Grant { span, permit: None });
        }
        let whole = span.start == 0 && span.end == chunk_len(span.index, self.cfg.chunk_size, size);
        // Without a disk there are no pieces: a chunk that left RAM is refilled whole.
        let here = self.store.has_disk()
            && match &self.peers {
                None => true,
                Some(p) => p.route(ck.placement_hash(), 1).first() == Some(&Node::Here),
            };
        let span = if whole || !here {
            span
        } else {
            self.budget.first_step(span)
        };
        self.budget.admit(span, held, wait).await
    }

    pub(super) fn count_served(&self, tier: Tier, n: usize) {
        self.metrics.served.inc_by(tier.as_str(), n as u64);
    }
}

/// How long a body producer waits for a client that stopped reading before it ends the
/// response and releases the chunks it holds.
const STALLED_CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Hands one body piece to the response; false when the client is gone or stalled too long.
pub(super) async fn send_or_give_up(tx: &mpsc::Sender<Result<Bytes>>, msg: Result<Bytes>) -> bool {
    match tokio::time::timeout(STALLED_CLIENT_TIMEOUT, tx.send(msg)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::warn!("client stopped reading; ending the response");
            false
        }
    }
}

/// The bytes of one read as handed to the connection: bytes shared with the RAM cache as
/// they are; any other bytes counted as held by the response (with their budget) until the
/// connection has written them.
fn frame(held: &Arc<Held>, s: Served, permit: Option<OwnedSemaphorePermit>) -> Bytes {
    match (s.tier, permit) {
        (Tier::Memory, _) => s.data,
        (_, permit) => held.track(s.data, permit),
    }
}

/// Removes the bytes of `taken` (the front of `pending`'s first span) from `pending`.
fn advance(pending: &mut VecDeque<ChunkSpan>, taken: ChunkSpan) {
    match pending.front_mut() {
        Some(front) if taken.end < front.end => front.start = taken.end,
        Some(_) => {
            pending.pop_front();
        }
        None => {}
    }
}
