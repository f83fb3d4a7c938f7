//! One zone's multi-probe consistent-hash ring.
//!
//! Each node puts points on a 64-bit ring (how many: its weight in [`POINTS_PER_UNIT`]ths of the
//! cluster's weight unit). A key throws [`PROBES`] probes on the ring; each probe's successor
//! point is at some clockwise distance, and the point nearest to any probe names the owner.
//! Finding a successor is one bucket lookup plus a short forward scan, so a lookup costs
//! [`PROBES`] hashes and about twice as many (independent, overlapping) memory reads, whatever
//! the ring's size.
//!
//! Why it moves only what it must: a node leaving only lengthens the distances of probes whose
//! successor was one of its points, so a key it did not own keeps its nearest point and owner;
//! a node joining only shortens distances to its own new points, so a key changes owner only to
//! it. Why it balances: one point per node leaves arcs that differ by large factors, but the
//! nearest of many probes favours large arcs less and less as the probe count grows (Appleton
//! and O'Reilly, "Multi-probe consistent hashing", 2015); [`Ring::shares`] computes the exact
//! expected share of every point, so the balance is measured, not sampled.

use super::mix;

/// Probes per key. More probes even the load out at a linear cost per lookup.
///
/// With [`POINTS_PER_UNIT`], chosen by measurement (exact shares; owner lookups at 100 000
/// nodes on the 2-core build box, noisy): 21 probes × 1 point gave max/mean 1.05 at 155 ns,
/// but min/mean 0.00 (a node whose only point sits just after another's gets almost nothing)
/// and whole-unit weights; 9 × 4 gave 1.13 at 220 ns; 16 × 4 gives 1.07 with min/mean 0.34
/// and quarter-unit weights at 250–390 ns (the ring no longer fits in L2).
pub(super) const PROBES: u64 = 16;

/// Ring points for a node of one weight unit (see `Placement::new`): finer weights and a
/// smoother load against memory, build time and cache misses. See [`PROBES`].
pub(super) const POINTS_PER_UNIT: u32 = 4;

/// The position of probe `t` (0-based) of `key`.
#[inline]
fn probe(key: u64, t: u64) -> u64 {
    mix(key.wrapping_add((t + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93)))
}

/// A key's probes on one ring, each with its current successor point and that point's node.
#[derive(Debug, Clone)]
pub(super) struct Probes {
    at: [u64; PROBES as usize],
    succ: [u32; PROBES as usize],
    node: [u32; PROBES as usize],
}

/// A sorted ring of points with a bucket index over the top bits of a position.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Ring {
    /// Point positions, ascending.
    pos: Vec<u64>,
    /// `owner[j]`: the node (an index into `Placement::nodes`) that point `j` belongs to.
    owner: Vec<u32>,
    /// `start[b]`: the first point whose position is at or after the start of bucket `b` (the
    /// buckets are the values of a position's top bits), so a successor search starts there.
    start: Vec<u32>,
    /// A position's bucket is `pos >> shift`.
    shift: u32,
}

impl Ring {
    /// A ring over `points` (position, node); their order does not matter. Must not be empty.
    pub(super) fn new(mut points: Vec<(u64, u32)>) -> Self {
        debug_assert!(!points.is_empty());
        // Ties in position (astronomically rare) are ordered by node, so that every member
        // builds the same ring.
        points.sort_unstable();
        let mut pos: Vec<u64> = Vec::with_capacity(points.len() + 1);
        pos.extend(points.iter().map(|p| p.0));
        // A sentinel that no probe is past, so a scan needs no length check.
        pos.push(u64::MAX);
        let owner: Vec<u32> = points.iter().map(|p| p.1).collect();
        let (start, shift) = index(&pos[..owner.len()]);
        Self {
            pos,
            owner,
            start,
            shift,
        }
    }

    /// How many points.
    pub(super) fn len(&self) -> usize {
        self.owner.len()
    }

    /// The index of `node`'s point at position `at`, if there is one.
    pub(super) fn find(&self, at: u64, node: u32) -> Option<usize> {
        let m = self.owner.len();
        let mut j = self.pos[..m].partition_point(|&x| x < at);
        while j < m && self.pos[j] == at {
            if self.owner[j] == node {
                return Some(j);
            }
            j += 1;
        }
        None
    }

    /// This ring changed: the points at indexes `dropped` (ascending) taken out, `added`
    /// (position, node) points (ascending, nodes already numbered as in the new node list)
    /// merged in, and every kept point's node renumbered through `remap` (old index to new
    /// index; `u32::MAX` for a node that left, whose points must all be in `dropped`).
    /// Exactly the ring [`Ring::new`] builds from the resulting points, without sorting: one
    /// pass over the points and one over the bucket index. `None` if no point is left.
    pub(super) fn patched(
        &self,
        dropped: &[usize],
        added: &[(u64, u32)],
        remap: &[u32],
    ) -> Option<Self> {
        let m = self.owner.len();
        let len = m - dropped.len() + added.len();
        if len == 0 {
            return None;
        }
        let mut pos: Vec<u64> = Vec::with_capacity(len + 1);
        let mut owner: Vec<u32> = Vec::with_capacity(len);
        // Old points before `a` are copied (or dropped); `d` indexes `dropped`.
        let (mut a, mut d) = (0usize, 0usize);
        let copy_to = |a: &mut usize,
                       d: &mut usize,
                       end: usize,
                       pos: &mut Vec<u64>,
                       owner: &mut Vec<u32>| {
            loop {
                let stop = match dropped.get(*d) {
                    Some(&x) if x < end => x,
                    _ => end,
                };
                pos.extend_from_slice(&self.pos[*a..stop]);
                owner.extend(self.owner[*a..stop].iter().map(|&o| {
                    debug_assert_ne!(remap[o as usize], u32::MAX, "a leaver's point kept");
                    remap[o as usize]
                }));
                if stop == end {
                    *a = end;
                    return;
                }
                *a = stop + 1;
                *d += 1;
            }
        };
        for &(p, o) in added {
            // The first old point after (p, o) in (position, new node) order. Equal positions
            // are as rare as in `new`, but must order the same way; a leaver's point there is
            // passed over (it is dropped anyway).
            let mut cut = a + self.pos[a..m].partition_point(|&x| x < p);
            while cut < m && self.pos[cut] == p && {
                let r = remap[self.owner[cut] as usize];
                r == u32::MAX || r < o
            } {
                cut += 1;
            }
            copy_to(&mut a, &mut d, cut, &mut pos, &mut owner);
            pos.push(p);
            owner.push(o);
        }
        copy_to(&mut a, &mut d, m, &mut pos, &mut owner);
        debug_assert_eq!(owner.len(), len);
        pos.push(u64::MAX);

        let bits = len.next_power_of_two().trailing_zeros();
        let (start, shift) = if self.shift == 64 - bits && self.start.len() == 1 << bits {
            // Same bucket count: a bucket's first point moves by the points added minus the
            // points dropped in the buckets before it. Patch it segment by segment.
            let shift = self.shift;
            let bucket = |p: u64| p.checked_shr(shift).unwrap_or(0) as usize;
            let mut events: Vec<(usize, i32)> = Vec::with_capacity(dropped.len() + added.len());
            events.extend(dropped.iter().map(|&j| (bucket(self.pos[j]), -1)));
            events.extend(added.iter().map(|&(p, _)| (bucket(p), 1)));
            events.sort_unstable();
            let mut start: Vec<u32> = Vec::with_capacity(self.start.len());
            let (mut b, mut off) = (0usize, 0i32);
            for (eb, delta) in events {
                // Buckets up to the event's own start before it.
                if eb >= b {
                    start.extend(
                        self.start[b..=eb]
                            .iter()
                            .map(|&s| s.wrapping_add_signed(off)),
                    );
                    b = eb + 1;
                }
                off += delta;
            }
            start.extend(self.start[b..].iter().map(|&s| s.wrapping_add_signed(off)));
            (start, shift)
        } else {
            index(&pos[..len])
        };
        Some(Self {
            pos,
            owner,
            start,
            shift,
        })
    }

    /// The first point at or clockwise after `p`, as an index.
    #[inline]
    fn successor(&self, p: u64) -> usize {
        let b = p.checked_shr(self.shift).unwrap_or(0) as usize;
        let mut j = self.start[b] as usize;
        // Two steps without branches cover most buckets; the loop is for the rest. The
        // sentinel stops every scan.
        j += usize::from(self.pos[j] < p);
        j += usize::from(self.pos[j] < p);
        while self.pos[j] < p {
            j += 1;
        }
        if j == self.owner.len() {
            0
        } else {
            j
        }
    }

    /// The owner of `key` in this ring.
    #[inline]
    pub(super) fn best(&self, key: u64) -> usize {
        let mut best_d = u64::MAX;
        let mut best_j = 0usize;
        for t in 0..PROBES {
            let p = probe(key, t);
            let j = self.successor(p);
            let d = self.pos[j].wrapping_sub(p);
            if d < best_d {
                best_d = d;
                best_j = j;
            }
        }
        self.owner[best_j] as usize
    }

    /// Where `key`'s probes land: the start of a failover walk ([`Ring::next_best`]).
    pub(super) fn probes(&self, key: u64) -> Probes {
        let mut st = Probes {
            at: [0; PROBES as usize],
            succ: [0; PROBES as usize],
            node: [0; PROBES as usize],
        };
        for t in 0..PROBES as usize {
            let p = probe(key, t as u64);
            let j = self.successor(p);
            st.at[t] = p;
            st.succ[t] = j as u32;
            st.node[t] = self.owner[j];
        }
        st
    }

    /// The owner of the probed key in this ring without the nodes in `skip` — exactly what
    /// [`Ring::best`] returns on a ring built without them; `None` if `skip` covers every
    /// node of the ring. Moves each probe past the skipped nodes' points, so a walk that
    /// skips more and more nodes only pays for the probes that hit them.
    pub(super) fn next_best(&self, st: &mut Probes, skip: &[usize]) -> Option<usize> {
        let m = self.owner.len();
        let mut best: Option<(u64, usize)> = None;
        for t in 0..PROBES as usize {
            let first = st.succ[t] as usize;
            let mut j = first;
            while skip.contains(&(st.node[t] as usize)) {
                j = if j + 1 == m { 0 } else { j + 1 };
                if j == first {
                    return None;
                }
                st.node[t] = self.owner[j];
            }
            st.succ[t] = j as u32;
            let d = self.pos[j].wrapping_sub(st.at[t]);
            if best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, t));
            }
        }
        best.map(|(_, t)| st.node[t] as usize)
    }

    /// Adds to `out[node]` the expected share of all keys this ring gives `node`, scaled by
    /// `scale` (the zone's share), for keys whose probes fall uniformly on the ring.
    ///
    /// The nearest probe is at distance > t exactly when no probe falls within t before any
    /// point: with `L(t) = Σ_j min(t, gap_j)` (gap_j: the arc ending at point j), that has
    /// probability `(1 − L(t))^k`. Point j wins with density `k (1 − L(t))^(k−1)` while
    /// t < gap_j, so its share is the integral of that from 0 to gap_j. `L` is piecewise linear
    /// between the sorted gaps, so the integral is exact in closed form.
    pub(super) fn shares(&self, out: &mut [f64], scale: f64) {
        let m = self.owner.len();
        let ring = 2f64.powi(64);
        let mut gaps: Vec<(f64, usize)> = (0..m)
            .map(|j| {
                let prev = self.pos[if j == 0 { m - 1 } else { j - 1 }];
                let g = self.pos[j].wrapping_sub(prev);
                // One point: its arc is the whole ring (the subtraction wraps to 0).
                let g = if m == 1 { ring } else { g as f64 };
                (g / ring, j)
            })
            .collect();
        gaps.sort_by(|a, b| a.0.total_cmp(&b.0));
        let k = PROBES as i32;
        // Walk the sorted gaps; between gaps i−1 and i, L(t) = sum + c·t with c gaps still
        // longer than t. cum = ∫_0^t k (1 − L)^(k−1) dt up to the current t.
        let (mut sum, mut cum, mut t) = (0.0f64, 0.0f64, 0.0f64);
        for (i, &(g, j)) in gaps.iter().enumerate() {
            let c = (m - i) as f64;
            let before = (1.0 - sum - c * t).max(0.0).powi(k);
            let after = (1.0 - sum - c * g).max(0.0).powi(k);
            cum += (before - after) / c;
            t = g;
            sum += g;
            out[self.owner[j] as usize] += cum * scale;
        }
    }

    /// Bytes this ring holds on the heap.
    pub(super) fn heap_bytes(&self) -> usize {
        self.pos.capacity() * 8 + self.owner.capacity() * 4 + self.start.capacity() * 4
    }
}

/// The bucket index over sorted positions `pos` (without the sentinel): about one point per
/// bucket, so a successor is mostly the bucket's first point or the next one. Returns the
/// first point of each bucket and the shift that maps a position to its bucket.
fn index(pos: &[u64]) -> (Vec<u32>, u32) {
    let bits = pos.len().next_power_of_two().trailing_zeros();
    let shift = 64 - bits;
    let mut start = Vec::with_capacity(1 << bits);
    let mut j = 0usize;
    for b in 0..1u64 << bits {
        // With bits = 0 there is one bucket, starting at 0 (and `b << 64` would overflow).
        let first = if bits == 0 { 0 } else { b << shift };
        while j < pos.len() && pos[j] < first {
            j += 1;
        }
        start.push(j as u32);
    }
    (start, shift)
}
