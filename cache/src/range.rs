//! Byte-range arithmetic: resolving a requested range against an object's size and splitting
//! the result into chunk-aligned pieces.

use std::ops::Range;

/// A requested byte range, as a client states it (inclusive bounds, like HTTP `Range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first..=last` (`last` is clamped to the object's end).
    FromTo { first: u64, last: u64 },
    /// `first..` to the end.
    From { first: u64 },
    /// The last `len` bytes.
    Suffix { len: u64 },
}

/// Why a range cannot be satisfied against an object's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("range not satisfiable for an object of {size} bytes")]
pub struct Unsatisfiable {
    /// The object's size.
    pub size: u64,
}

impl RangeSpec {
    /// Resolves the range against `size`, returning the half-open byte range to send.
    ///
    /// Follows RFC 9110 §14.1.2: a first position at or past the end is unsatisfiable; a last
    /// position past the end is clamped; a suffix longer than the object means the whole
    /// object; a zero-length suffix is unsatisfiable.
    pub fn resolve(self, size: u64) -> Result<Range<u64>, Unsatisfiable> {
        let err = Unsatisfiable { size };
        match self {
            Self::FromTo { first, last } => {
                if last < first || first >= size {
                    return Err(err);
                }
                Ok(first..last.min(size - 1) + 1)
            }
            Self::From { first } => {
                if first >= size {
                    return Err(err);
                }
                Ok(first..size)
            }
            Self::Suffix { len } => {
                if len == 0 || size == 0 {
                    return Err(err);
                }
                Ok(size - len.min(size)..size)
            }
        }
    }

    /// The first byte offset, when it does not depend on the object's size.
    pub fn known_start(self) -> Option<u64> {
        match self {
            Self::FromTo { first, .. } | Self::From { first } => Some(first),
            Self::Suffix { .. } => None,
        }
    }
}

/// One chunk's share of a byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSpan {
    /// Chunk index within the object.
    pub index: u64,
    /// Offset of the wanted bytes within the chunk.
    pub start: usize,
    /// End (exclusive) of the wanted bytes within the chunk.
    pub end: usize,
}

/// The byte range chunk `index` covers in an object of `size` bytes.
pub fn chunk_bounds(index: u64, chunk_size: u64, size: u64) -> Range<u64> {
    let start = index.saturating_mul(chunk_size).min(size);
    start..start.saturating_add(chunk_size).min(size)
}

/// Splits `range` into per-chunk spans, in order.
pub fn chunk_spans(range: Range<u64>, chunk_size: u64) -> impl Iterator<Item = ChunkSpan> {
    assert!(chunk_size > 0, "chunk size must be positive");
    let first = range.start / chunk_size;
    let last = if range.is_empty() {
        first
    } else {
        (range.end - 1) / chunk_size + 1
    };
    (first..last).map(move |index| {
        let chunk_start = index * chunk_size;
        let start = range.start.max(chunk_start) - chunk_start;
        // Saturating: a size near u64::MAX (an origin may claim one) must not overflow.
        let end = range.end.min(chunk_start.saturating_add(chunk_size)) - chunk_start;
        ChunkSpan {
            index,
            start: start as usize,
            end: end as usize,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn resolve_follows_rfc9110() {
        let s = 100;
        assert_eq!(
            RangeSpec::FromTo { first: 0, last: 9 }.resolve(s),
            Ok(0..10)
        );
        assert_eq!(
            RangeSpec::FromTo {
                first: 90,
                last: 500
            }
            .resolve(s),
            Ok(90..100)
        );
        assert!(RangeSpec::FromTo {
            first: 100,
            last: 200
        }
        .resolve(s)
        .is_err());
        assert!(RangeSpec::FromTo { first: 5, last: 4 }.resolve(s).is_err());
        assert_eq!(RangeSpec::From { first: 99 }.resolve(s), Ok(99..100));
        assert!(RangeSpec::From { first: 100 }.resolve(s).is_err());
        assert_eq!(RangeSpec::Suffix { len: 10 }.resolve(s), Ok(90..100));
        assert_eq!(RangeSpec::Suffix { len: 1000 }.resolve(s), Ok(0..100));
        assert!(RangeSpec::Suffix { len: 0 }.resolve(s).is_err());
        assert!(RangeSpec::From { first: 0 }.resolve(0).is_err());
        assert!(RangeSpec::Suffix { len: 5 }.resolve(0).is_err());
    }

    /// Found by `scripts/fuzz run ranges`: the last chunk of an object whose claimed size is
    /// near `u64::MAX`.
    #[test]
    fn spans_of_a_huge_object_do_not_overflow() {
        let cs = 4 << 20;
        let r = RangeSpec::Suffix { len: 10 }
            .resolve(u64::MAX)
            .expect("range");
        let spans: Vec<_> = chunk_spans(r, cs).collect();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].end - spans[0].start, 10);
    }

    #[test]
    fn spans_cross_boundaries() {
        let spans: Vec<_> = chunk_spans(3..13, 5).collect();
        assert_eq!(
            spans,
            vec![
                ChunkSpan {
                    index: 0,
                    start: 3,
                    end: 5
                },
                ChunkSpan {
                    index: 1,
                    start: 0,
                    end: 5
                },
                ChunkSpan {
                    index: 2,
                    start: 0,
                    end: 3
                },
            ]
        );
        assert_eq!(chunk_spans(5..5, 5).count(), 0);
        assert_eq!(chunk_bounds(2, 5, 12), 10..12);
        assert_eq!(chunk_bounds(3, 5, 12), 12..12);
    }

    proptest! {
        /// The spans tile the range exactly, in order, each within one chunk.
        #[test]
        fn spans_tile_the_range(start in 0u64..10_000, len in 0u64..10_000, chunk in 1u64..3_000) {
            let range = start..start + len;
            let mut pos = range.start;
            for s in chunk_spans(range.clone(), chunk) {
                prop_assert!(s.start < s.end);
                prop_assert!(s.end as u64 <= chunk);
                prop_assert_eq!(s.index * chunk + s.start as u64, pos);
                pos = s.index * chunk + s.end as u64;
            }
            prop_assert_eq!(pos, range.end);
        }

        /// A resolved range always lies within the object and is non-empty.
        #[test]
        fn resolved_ranges_are_within_the_object(a in 0u64..500, b in 0u64..500, size in 0u64..400, kind in 0u8..3) {
            let spec = match kind {
                0 => RangeSpec::FromTo { first: a, last: b },
                1 => RangeSpec::From { first: a },
                _ => RangeSpec::Suffix { len: a },
            };
            if let Ok(r) = spec.resolve(size) {
                prop_assert!(r.start < r.end);
                prop_assert!(r.end <= size);
            }
        }
    }
}
