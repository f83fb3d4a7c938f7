//! Chunk keys and chunk values, with their on-disk encoding.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use foyer::Code;

/// Identifies one chunk of one version of an object. The ETag is part of the key, so bytes of
/// two versions never mix and a changed object simply stops being found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    /// Origin name (from configuration).
    pub origin: Arc<str>,
    /// Bucket (or container) at the origin.
    pub bucket: Arc<str>,
    /// Object key at the origin.
    pub key: Arc<str>,
    /// The object's ETag, as the origin reports it.
    pub etag: Arc<str>,
    /// Chunk index within the object.
    pub index: u64,
}

impl ChunkKey {
    /// Chunk `index` of one fixed object (`o`/`b`/`k`, ETag `e`), for the crate's tests.
    #[cfg(test)]
    pub(crate) fn for_test(index: u64) -> Self {
        Self {
            origin: "o".into(),
            bucket: "b".into(),
            key: "k".into(),
            etag: "e".into(),
            index,
        }
    }

    /// The chunk's placement hash (which node owns it). The ETag is left out, so every
    /// version of a chunk lives on the same node; `index` spreads an object's chunks.
    pub fn placement_hash(&self) -> u64 {
        crate::placement::stable_hash(&[
            b"chunk",
            self.origin.as_bytes(),
            self.bucket.as_bytes(),
            self.key.as_bytes(),
            &self.index.to_le_bytes(),
        ])
    }
}

/// One piece of a chunk as stored on SSD (see `ChunkStore`), or — with piece `u32::MAX` — a
/// small record kept beside the chunks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PieceKey {
    /// The chunk.
    pub chunk: ChunkKey,
    /// Piece number within the chunk.
    pub piece: u32,
}

/// A chunk's bytes and their CRC32C.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// The chunk's bytes.
    pub data: Bytes,
    /// CRC32C of `data`, computed when the chunk was filled from the origin.
    pub crc32c: u32,
    /// False when the bytes read back from disk did not match the stored CRC32C.
    pub intact: bool,
}

impl Chunk {
    /// Wraps freshly fetched bytes, computing their checksum.
    pub fn new(data: Bytes) -> Self {
        let crc32c = crc32c::crc32c(&data);
        Self {
            data,
            crc32c,
            intact: true,
        }
    }
}

const CHUNK_MAGIC: u32 = 0xC157_E401;

fn io(e: std::io::Error) -> foyer::Error {
    foyer::Error::io_error(e)
}

fn write_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u32).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_str(r: &mut impl Read) -> std::io::Result<Arc<str>> {
    let len = read_u32(r)? as usize;
    if len > 64 * 1024 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "key field too long",
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    String::from_utf8(buf)
        .map(Arc::from)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

impl Code for ChunkKey {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        write_str(w, &self.origin).map_err(io)?;
        write_str(w, &self.bucket).map_err(io)?;
        write_str(w, &self.key).map_err(io)?;
        write_str(w, &self.etag).map_err(io)?;
        w.write_all(&self.index.to_le_bytes()).map_err(io)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        Ok(Self {
            origin: read_str(r).map_err(io)?,
            bucket: read_str(r).map_err(io)?,
            key: read_str(r).map_err(io)?,
            etag: read_str(r).map_err(io)?,
            index: read_u64(r).map_err(io)?,
        })
    }

    fn estimated_size(&self) -> usize {
        16 + self.origin.len() + self.bucket.len() + self.key.len() + self.etag.len() + 8
    }
}

/// Leads every encoded [`PieceKey`], so that entries of an older layout (whole chunks under
/// a bare chunk key) never decode as pieces.
const PIECE_KEY_MAGIC: u32 = 0xC157_E402;

impl Code for PieceKey {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        w.write_all(&PIECE_KEY_MAGIC.to_le_bytes()).map_err(io)?;
        self.chunk.encode(w)?;
        w.write_all(&self.piece.to_le_bytes()).map_err(io)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        if read_u32(r).map_err(io)? != PIECE_KEY_MAGIC {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a chunk piece key",
            )));
        }
        let chunk = ChunkKey::decode(r)?;
        Ok(Self {
            chunk,
            piece: read_u32(r).map_err(io)?,
        })
    }

    fn estimated_size(&self) -> usize {
        8 + self.chunk.estimated_size()
    }
}

impl Code for Chunk {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        w.write_all(&CHUNK_MAGIC.to_le_bytes()).map_err(io)?;
        w.write_all(&self.crc32c.to_le_bytes()).map_err(io)?;
        w.write_all(&(self.data.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(&self.data).map_err(io)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        let magic = read_u32(r).map_err(io)?;
        let crc = read_u32(r).map_err(io)?;
        let len = read_u64(r).map_err(io)? as usize;
        if magic != CHUNK_MAGIC || len > 1 << 31 {
            // An unrecognizable header is treated as corruption: never served.
            return Ok(Self {
                data: Bytes::new(),
                crc32c: 0,
                intact: false,
            });
        }
        let mut buf = vec![0u8; len];
        r.read_exact(&mut buf).map_err(io)?;
        let intact = crc32c::crc32c(&buf) == crc;
        Ok(Self {
            data: Bytes::from(buf),
            crc32c: crc,
            intact,
        })
    }

    fn estimated_size(&self) -> usize {
        16 + self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ChunkKey {
        ChunkKey {
            origin: "o".into(),
            bucket: "b".into(),
            key: "dir/ключ".into(),
            etag: "\"abc\"".into(),
            index: 3,
        }
    }

    #[test]
    fn key_round_trips() {
        let mut buf = Vec::new();
        key().encode(&mut buf).expect("encode");
        let back = ChunkKey::decode(&mut buf.as_slice()).expect("decode");
        assert_eq!(back, key());
    }

    #[test]
    fn piece_key_round_trips_and_refuses_a_bare_chunk_key() {
        let pk = PieceKey {
            chunk: key(),
            piece: 7,
        };
        let mut buf = Vec::new();
        pk.encode(&mut buf).expect("encode");
        assert_eq!(PieceKey::decode(&mut buf.as_slice()).expect("decode"), pk);
        let mut old = Vec::new();
        key().encode(&mut old).expect("encode");
        assert!(PieceKey::decode(&mut old.as_slice()).is_err());
    }

    #[test]
    fn chunk_round_trips_and_detects_corruption() {
        let chunk = Chunk::new(Bytes::from_static(b"hello chunk"));
        let mut buf = Vec::new();
        chunk.encode(&mut buf).expect("encode");
        let back = Chunk::decode(&mut buf.as_slice()).expect("decode");
        assert!(back.intact);
        assert_eq!(back.data, chunk.data);

        let last = buf.len() - 1;
        buf[last] ^= 0x40;
        let bad = Chunk::decode(&mut buf.as_slice()).expect("decode");
        assert!(!bad.intact, "a flipped bit must be detected");
    }
}
