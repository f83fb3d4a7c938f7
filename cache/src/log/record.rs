//! One chunk as it lies in a segment: a header (the key, the length, one CRC32C per piece),
//! then the bytes, both padded to 4 KiB so that every read and write is O_DIRECT-aligned.
//!
//! ```text
//! at:      magic u32 | version u16 | 0 u16 | seq u64 | len u32 | piece u32 | key_len u32
//!          | key (ChunkKey's encoding) | crc32c u32 × ceil(len / piece) | tag [u8; 16]
//!          | zeros to 4 KiB
//! at + H:  len bytes | zeros to 4 KiB
//! ```

use std::ops::Range;

use bytes::Bytes;
use foyer::Code;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::key::ChunkKey;

/// The alignment of every offset, length and buffer the log reads or writes.
pub(crate) const ALIGN: usize = 4096;
const MAGIC: u32 = 0xC157_5E61;
const VERSION: u16 = 1;
/// magic, version, reserved, seq, len, piece, key_len.
const FIXED: usize = 4 + 2 + 2 + 8 + 4 + 4 + 4;
const MAX_KEY: usize = 256 << 10;
/// The header tag's length.
const TAG: usize = 16;

pub(crate) fn align_up(n: usize) -> usize {
    n.next_multiple_of(ALIGN)
}

/// A zeroed buffer of `len` bytes whose start is 4 KiB-aligned in memory (O_DIRECT needs it):
/// the vector and the offset of that start in it.
pub(crate) fn aligned(len: usize) -> (Vec<u8>, usize) {
    // Large allocations usually come page-aligned: then no slack is needed.
    let mut buf = Vec::with_capacity(len);
    if (buf.as_ptr() as usize).is_multiple_of(ALIGN) {
        buf.resize(len, 0);
        return (buf, 0);
    }
    let buf = vec![0u8; len + ALIGN];
    let off = (ALIGN - buf.as_ptr() as usize % ALIGN) % ALIGN;
    (buf, off)
}

/// What a header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub seq: u64,
    pub len: usize,
    pub piece: usize,
    pub key: ChunkKey,
    pub crcs: Vec<u32>,
    /// The header's size on disk (a multiple of 4 KiB): the bytes start there.
    pub size: usize,
}

impl Header {
    /// Where the record ends, relative to its start.
    pub fn span(&self) -> usize {
        self.size + align_up(self.len)
    }
}

fn pieces(len: usize, piece: usize) -> usize {
    len.div_ceil(piece)
}

/// The header's size for a key of `key_len` bytes and `len` bytes of data.
fn header_size(key_len: usize, len: usize, piece: usize) -> usize {
    align_up(FIXED + key_len + 4 * pieces(len, piece) + TAG)
}

/// A record laid out for writing: `buf[off..off + total]` is 4 KiB-aligned in memory.
#[cfg(test)]
pub(crate) struct Encoded {
    pub buf: Vec<u8>,
    pub off: usize,
    pub total: usize,
}

#[cfg(test)]
impl Encoded {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.off..self.off + self.total]
    }
}

/// A record's layout, before its bytes are known: the encoded key, the header's size and the
/// record's total size on disk (both multiples of 4 KiB).
pub(crate) struct Plan {
    key: Vec<u8>,
    pub size: usize,
    pub total: usize,
}

/// The layout of the record for `key` and `len` bytes of data; `None` when the key or the
/// data is too long for the format.
pub(crate) fn plan(key: &ChunkKey, len: usize, piece: usize) -> Option<Plan> {
    let mut k = Vec::with_capacity(key.estimated_size());
    key.encode(&mut k).ok()?;
    if k.len() > MAX_KEY || u32::try_from(len).is_err() {
        return None;
    }
    let size = header_size(k.len(), len, piece);
    Some(Plan {
        key: k,
        size,
        total: size + align_up(len),
    })
}

/// A buffer for records: `buf[off..]` starts 4 KiB-aligned in memory and records are
/// appended to it without zeroing what they overwrite (only their padding is written as zeros).
pub(crate) fn aligned_empty(capacity: usize) -> (Vec<u8>, usize) {
    let buf = Vec::with_capacity(capacity + ALIGN);
    let off = (ALIGN - buf.as_ptr() as usize % ALIGN) % ALIGN;
    let mut buf = buf;
    buf.resize(off, 0);
    (buf, off)
}

/// Appends the record planned as `p` for `data` to `out` (which must have room for
/// `p.total` more bytes, so that it does not move), sealed with `salt` (see [`seal`]);
/// answers the pieces' CRC32Cs.
pub(crate) fn encode_append(
    p: &Plan,
    out: &mut Vec<u8>,
    seq: u64,
    data: &[u8],
    piece: usize,
    salt: &[u8; 32],
) -> Vec<u32> {
    let start = out.len();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(piece as u32).to_le_bytes());
    out.extend_from_slice(&(p.key.len() as u32).to_le_bytes());
    out.extend_from_slice(&p.key);
    let crcs: Vec<u32> = data.chunks(piece).map(crc32c::crc32c).collect();
    for c in &crcs {
        out.extend_from_slice(&c.to_le_bytes());
    }
    let tag = seal(salt, &out[start..]);
    out.extend_from_slice(&tag);
    out.resize(start + p.size, 0);
    out.extend_from_slice(data);
    out.resize(start + p.total, 0);
    crcs
}

/// The record for `key` and `data` in a buffer of its own (see [`encode_append`]).
#[cfg(test)]
pub(crate) fn encode(
    seq: u64,
    key: &ChunkKey,
    data: &[u8],
    piece: usize,
    salt: &[u8; 32],
) -> Option<Encoded> {
    let p = plan(key, data.len(), piece)?;
    let (mut buf, off) = aligned_empty(p.total);
    encode_append(&p, &mut buf, seq, data, piece, salt);
    Some(Encoded {
        buf,
        off,
        total: p.total,
    })
}

/// The header's tag: HMAC-SHA256 keyed with the log's salt (random, kept in its layout file),
/// cut to 16 bytes. A header is believed only with it: chunk bytes are client-controlled, and
/// a reused segment keeps stale bytes past its new records, so a body forging a header (a
/// victim's key, a high sequence number) must not be recovered as a record.
fn seal(salt: &[u8; 32], header: &[u8]) -> [u8; TAG] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salt).expect("HMAC takes any key length");
    mac.update(header);
    let full = mac.finalize().into_bytes();
    let mut tag = [0u8; TAG];
    tag.copy_from_slice(&full[..TAG]);
    tag
}

/// The header size a record starting with `first` (its first 4 KiB) needs, if `first` looks
/// like a header: the caller reads that much before [`decode`].
pub(crate) fn needed(first: &[u8]) -> Option<usize> {
    if first.len() < FIXED || u32_at(first, 0) != MAGIC || u16_at(first, 4) != VERSION {
        return None;
    }
    let (len, piece, key_len) = (
        u32_at(first, 16) as usize,
        u32_at(first, 20) as usize,
        u32_at(first, 24) as usize,
    );
    if piece == 0 || !piece.is_multiple_of(ALIGN) || key_len > MAX_KEY {
        return None;
    }
    Some(header_size(key_len, len, piece))
}

/// Decodes a whole header (`needed` bytes), checking its tag.
pub(crate) fn decode(buf: &[u8], salt: &[u8; 32]) -> Option<Header> {
    let size = needed(buf)?;
    if buf.len() < size {
        return None;
    }
    let (len, piece, key_len) = (
        u32_at(buf, 16) as usize,
        u32_at(buf, 20) as usize,
        u32_at(buf, 24) as usize,
    );
    let n = pieces(len, piece);
    let end = FIXED + key_len + 4 * n;
    if !bool::from(seal(salt, &buf[..end]).ct_eq(&buf[end..end + TAG])) {
        return None;
    }
    let mut k = &buf[FIXED..FIXED + key_len];
    let key = ChunkKey::decode(&mut k).ok()?;
    let crcs = (0..n)
        .map(|i| u32_at(buf, FIXED + key_len + 4 * i))
        .collect();
    Some(Header {
        seq: u64::from_le_bytes(buf[8..16].try_into().ok()?),
        len,
        piece,
        key,
        crcs,
        size,
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// The pieces bytes `want` of a `len`-byte record touch, as a byte range relative to the
/// record's data (piece-aligned start, end cut at the padded length).
pub(crate) fn piece_span(want: &Range<usize>, len: usize, piece: usize) -> Range<usize> {
    let start = want.start / piece * piece;
    let end = want.end.div_ceil(piece) * piece;
    start..end.min(align_up(len))
}

/// Checks the pieces in `read` (the bytes at `span` of a record's data) against their CRC32Cs:
/// the index of the first piece that does not match.
pub(crate) fn verify(
    read: &Bytes,
    span: &Range<usize>,
    len: usize,
    crcs: &[u32],
    piece: usize,
) -> Result<(), usize> {
    let mut at = span.start;
    while at < span.end.min(len) {
        let i = at / piece;
        let end = (at + piece).min(len);
        let got = crc32c::crc32c(&read[at - span.start..end - span.start]);
        if crcs.get(i) != Some(&got) {
            return Err(i);
        }
        at += piece;
    }
    Ok(())
}
