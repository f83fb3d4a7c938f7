//! The response memory budget: bytes that responses hold outside the RAM cache (read from
//! SSD, fetched from a peer or the origin) are bounded across all responses at once.
//!
//! A response reading a chunk that is not in RAM first takes that many bytes from the budget;
//! they come back when the connection has written them (the permit travels inside the
//! `Bytes` handed to hyper). When the budget is spent, a response that still holds bytes
//! waits; one that holds nothing — a new request, or a reader that has drained everything it
//! was sent — goes on without the budget, one step ([`STEP`]) at a time. So memory stays near
//! the budget plus one step per connection, and no client can stall another for good: a client
//! that reads its responses one after another never waits on bytes it has not read yet.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cistern_cache::range::ChunkSpan;
use prometheus::IntCounter;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// What a response without budget reads at a time by default: small enough to bound memory
/// per connection, large enough that a 1 MiB range is a few reads, not hundreds (it used to be
/// the SSD piece size, which is 4 KiB now).
pub(super) const STEP: usize = 256 << 10;

/// Bytes in flight outside the RAM cache, shared by all responses.
pub(super) struct Budget {
    permits: Arc<Semaphore>,
    total: usize,
    /// The unit a response without budget advances by ([`STEP`] outside tests).
    step: usize,
    /// Counts reads that found the budget spent.
    waits: IntCounter,
}

/// What a response may read next.
pub(super) struct Grant {
    /// The bytes to read: the span asked for, or its first step.
    pub span: ChunkSpan,
    /// Budget held until those bytes are written (`None`: without budget).
    pub permit: Option<OwnedSemaphorePermit>,
}

impl Budget {
    pub fn new(total: usize, step: usize, waits: IntCounter) -> Self {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(total)),
            total,
            step: step.max(1),
            waits,
        }
    }

    /// Admits a small read (at most a step) without budget by a response that holds
    /// nothing and has nothing in flight (`alone`): the same a spent budget would allow it.
    pub fn small(&self, span: ChunkSpan, held: &Held, alone: bool) -> Option<Grant> {
        (alone && span.end - span.start <= self.step && held.is_drained())
            .then_some(Grant { span, permit: None })
    }

    /// Admits reading `span`, which is not in RAM. `wait`: whether to wait when the budget is
    /// spent (else `None` comes back at once, and the caller sends what it has first).
    pub async fn admit(&self, span: ChunkSpan, held: &Held, wait: bool) -> Option<Grant> {
        if let Some(g) = self.small(span, held, wait) {
            return Some(g);
        }
        let want = (span.end - span.start).min(self.total);
        let n = u32::try_from(want).unwrap_or(u32::MAX);
        if let Ok(p) = Arc::clone(&self.permits).try_acquire_many_owned(n) {
            return Some(Grant {
                span,
                permit: Some(p),
            });
        }
        if !wait {
            return None;
        }
        self.waits.inc();
        tokio::select! {
            p = Arc::clone(&self.permits).acquire_many_owned(n) => Some(Grant {
                span,
                permit: p.ok(),
            }),
            () = held.drained() => Some(Grant {
                span: self.first_step(span),
                permit: None,
            }),
        }
    }

    /// The part of `span` up to the end of the step it starts in.
    pub fn first_step(&self, span: ChunkSpan) -> ChunkSpan {
        let end = ((span.start / self.step + 1) * self.step).min(span.end);
        ChunkSpan { end, ..span }
    }
}

/// The bytes one response has been given and not yet written (counted per response).
#[derive(Default)]
pub(super) struct Held {
    frames: AtomicUsize,
    drained: Notify,
}

impl Held {
    fn is_drained(&self) -> bool {
        self.frames.load(Ordering::Acquire) == 0
    }

    async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.is_drained() {
                return;
            }
            notified.await;
        }
    }

    /// Wraps bytes so that they count as held by this response, with their budget, until
    /// the connection drops them (zero-copy).
    pub fn track(self: &Arc<Self>, data: Bytes, permit: Option<OwnedSemaphorePermit>) -> Bytes {
        self.frames.fetch_add(1, Ordering::AcqRel);
        Bytes::from_owner(Frame {
            data,
            _permit: permit,
            held: Arc::clone(self),
        })
    }
}

struct Frame {
    data: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
    held: Arc<Held>,
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        if self.held.frames.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.held.drained.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: usize, end: usize) -> ChunkSpan {
        ChunkSpan {
            index: 0,
            start,
            end,
        }
    }

    #[tokio::test]
    async fn a_spent_budget_makes_holders_wait_and_lets_the_drained_go_on_by_pieces() {
        let waits = IntCounter::new("w", "w").expect("counter");
        let budget = Budget::new(1000, 100, waits.clone());
        let a = Arc::new(Held::default());
        let g = budget.admit(span(0, 800), &a, true).await.expect("grant");
        assert_eq!((g.span.end, budget.permits.available_permits()), (800, 200));
        let frame = a.track(Bytes::from(vec![1u8; 800]), g.permit);

        // A holder that cannot get budget gets nothing when it need not wait.
        assert!(budget.admit(span(800, 1600), &a, false).await.is_none());
        // A new response (holding nothing) goes on without budget, one piece at a time.
        let b = Arc::new(Held::default());
        let g = budget.admit(span(250, 900), &b, true).await.expect("grant");
        assert_eq!((g.span.start, g.span.end), (250, 300));
        assert!(g.permit.is_none());
        // Small reads by a drained response with nothing in flight need no budget at all.
        let g = budget.admit(span(0, 50), &b, true).await.expect("grant");
        assert!(g.permit.is_none());
        assert!(budget.small(span(0, 50), &b, false).is_none());

        // The holder's wait ends when its bytes are written (dropped), through either path.
        let waiting = tokio::spawn({
            let a = Arc::clone(&a);
            let budget = Arc::new(budget);
            async move {
                let g = budget
                    .admit(span(800, 1600), &a, true)
                    .await
                    .expect("grant");
                (g.span.end, g.permit.is_some())
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(frame);
        let (end, _) = waiting.await.expect("join");
        assert!(
            end == 1600 || end == 900,
            "the whole span or its first piece"
        );
        assert_eq!(waits.get(), 2);
    }

    #[test]
    fn tracked_bytes_read_as_the_original() {
        let held = Arc::new(Held::default());
        let b = held.track(Bytes::from_static(b"abcdef"), None);
        assert_eq!(&b.slice(1..3)[..], b"bc");
        assert!(!held.is_drained());
        drop(b);
        assert!(held.is_drained());
    }
}
