//! `cistern-cache`: the chunk cache behind Cistern's direct-read path. It knows nothing of S3,
//! Blob or HTTP.
//!
//! - [`range`]: byte-range requests resolved against an object's size, and their mapping onto
//!   fixed-size chunks.
//! - [`ChunkKey`] / [`Chunk`]: a chunk is identified by `(origin, bucket, key, etag, index)`, so
//!   two versions of an object never share bytes; each chunk carries a CRC32C checked when it is
//!   read back from disk.
//! - [`ChunkStore`]: a foyer RAM cache of whole chunks over the SSD chunk log (segments read
//!   back by the 4 KiB-aligned pieces a range touches), with per-chunk single-flight fill; it
//!   reports the tier each read was served from.
//! - [`MetaCache`] / [`ObjectMeta`] / [`Consistency`]: object metadata and the per-bucket
//!   freshness policy.
//! - [`SingleFlight`]: coalesces concurrent identical work into one task.
//! - [`Heat`] / [`NearCache`] / [`TopKeys`]: hot-key detection, a small RAM cache for hot
//!   chunks owned elsewhere, and the most-read keys (for operators).
//! - [`KvStore`]: cache-only namespaces (the inference KV tier): objects written into the
//!   cache and nowhere else, with a per-namespace quota (LRU eviction) and time to live.
//! - Pins ([`ChunkStore::pin`]): chunks kept in RAM until a deadline, beside foyer's cache.
//! - [`placement`]: which cache node owns a key: weighted rendezvous over zones, then multi-probe consistent hashing within the zone.

mod flight;
mod hot;
mod key;
mod kv;
mod log;
mod meta;
mod pin;
pub mod placement;
pub mod range;
mod store;

pub use flight::SingleFlight;
pub use hot::{Heat, NearCache, TopKeys};
pub use key::{Chunk, ChunkKey, PieceKey};
pub use kv::{KvError, KvLimits, KvStore, KvUsage};
pub use meta::{Consistency, Lookup, MetaCache, MetaKey, ObjectMeta};
pub use store::{ssd_files, ChunkStore, Served, StoreConfig, Tier};
