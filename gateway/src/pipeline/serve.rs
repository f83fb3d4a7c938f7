//! What this node answers to the other nodes of its cache cluster: chunks, metadata,
//! invalidations and chunks handed over to their owner.

use std::sync::Arc;

use bytes::Bytes;
use cistern_cache::range::ChunkSpan;
use cistern_cache::Served;

use super::chunk::chunk_len;
use super::peers::{ChunkAsk, MetaAnswer};
use super::Pipeline;
use crate::error::{Error, ErrorKind, Result};

impl Pipeline {
    /// Serves another node's chunk request from this node's store (never forwarded, except
    /// that a hot chunk's replica fills from the owner named in `ask.via`).
    pub async fn serve_chunk(&self, ask: ChunkAsk) -> Result<Served> {
        self.check_geometry(&ask)?;
        let b = self.catalog.resolve(&ask.bucket).await?;
        let ck = self.chunk_key(&b, &ask.key, &ask.etag, ask.index);
        let len = chunk_len(ask.index, ask.chunk_size, ask.size);
        let (start, end) = match ask.part {
            None => (0, len),
            Some((start, end)) if start < end && end <= len => (start, end),
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "The chunk part is empty or lies past the end of the chunk",
                ))
            }
        };
        if let Some(secs) = ask.pin {
            // A pinned warm-up: the whole chunk is read (filled if missing) and pinned here.
            let served = self
                .warm_here(&b, ck, ask.size, Some(std::time::Duration::from_secs(secs)))
                .await?;
            return Ok(Served {
                data: served.data.slice(start..end.min(served.data.len())),
                ..served
            });
        }
        if ask.cached_only && !self.store.resident(&ck) {
            // Another region asks before its origin: a miss here is its miss, never our fill.
            return Err(Error::new(
                ErrorKind::NotFound,
                "The chunk is not cached here (asked only if cached)",
            ));
        }
        let span = ChunkSpan {
            index: ask.index,
            start,
            end,
        };
        self.local_chunk(&b, ck, ask.size, span, ask.via).await
    }

    /// Serves another node's metadata request: this node is the object's metadata owner.
    pub async fn serve_meta(
        &self,
        bucket: &str,
        key: &str,
        want: Option<u64>,
    ) -> Result<MetaAnswer> {
        let b = self.catalog.resolve(bucket).await?;
        let key: Arc<str> = Arc::from(key);
        let (fill, fetched) = self.metadata_at(&b, &key, want, true).await?;
        Ok(MetaAnswer {
            meta: Arc::unwrap_or_clone(fill.meta),
            chunk: fill.chunk,
            fetched,
        })
    }

    /// Forgets an object's metadata on another node's word (it wrote the object).
    pub async fn serve_invalidate(&self, bucket: &str, key: &str) -> Result<()> {
        let b = self.catalog.resolve(bucket).await?;
        self.written_here(&self.meta_key(&b, &Arc::from(key)));
        Ok(())
    }

    /// Keeps a chunk another node fetched for this node (its owner).
    pub async fn accept_chunk(&self, ask: ChunkAsk, data: Bytes) -> Result<()> {
        self.check_geometry(&ask)?;
        if data.len() != chunk_len(ask.index, ask.chunk_size, ask.size) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "The chunk has the wrong length",
            ));
        }
        let b = self.catalog.resolve(&ask.bucket).await?;
        let ck = self.chunk_key(&b, &ask.key, &ask.etag, ask.index);
        self.store.insert(ck, data);
        Ok(())
    }

    fn check_geometry(&self, ask: &ChunkAsk) -> Result<()> {
        if ask.chunk_size != self.cfg.chunk_size {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "The nodes disagree on the chunk size; every node must run the same configuration",
            ));
        }
        if ask.index.saturating_mul(ask.chunk_size) >= ask.size {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "The chunk lies past the end of the object",
            ));
        }
        Ok(())
    }
}
