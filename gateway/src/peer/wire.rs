//! The peer protocol's wire format, shared by client and server.
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/chunk?b&k&e&s&i&cs[&via][&r][&oc]` | 200, the chunk (or its bytes `r`=`start-end`); `x-cistern-tier` says where the node found it; with `oc=1` (another region asking) only from its own cache, else 404 |
//! | `PUT /v1/chunk?b&k&e&s&i&cs` + chunk | 204: the owner keeps a chunk fetched elsewhere |
//! | `GET /v1/meta?b&k[&w]` | 200, `u32` length + metadata record [+ chunk `w`, named by `x-cistern-chunk`] |
//! | `POST /v1/invalidate?b&k` | 204: the owner forgot the object's metadata |
//! | `GET /v1/health` | 200, JSON: instance id, weight, zone, epoch, members (small clusters) |
//! | `PUT /v1/kv/put?b&k&e&i[&c&q&t]` + chunk | 204: a cache-only object's chunk `i` of version `e` is kept; with `c=1` the body starts with the `u32`-length metadata record and the object is committed under quota `q` bytes and time to live `t` seconds |
//! | `GET /v1/kv/get?b&k[&r][&e]` | 200, `u32` length + metadata record [+ bytes `r`=`start-end`]; with `e`, only that version (else 412) |
//! | `POST /v1/kv/delete?b&k` | 204: the node dropped the object |
//! | `GET /v1/kv/list?b&p[&d][&m][&n]` | 200, JSON: the node's page of the namespace's listing (prefix `p`, delimiter `d`, after `m`, at most `n`) |
//!
//! `b` is the bucket as the catalog names it, `k` the key, `e` the ETag, `s` the object size,
//! `i` the chunk index, `cs` the chunk size. Every request and answer is signed
//! ([`cistern_auth::peer`]), the MACs covering a keyed digest of the body, so a changed
//! or truncated body is refused like a forged one. Errors are JSON `{kind, message}`
//! with the internal error kind (and `delete_marker`, `version_id` when the origin answered
//! for a delete marker).

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use cistern_cache::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::origin::{ListCursor, ListEntry, ListPage, ListQuery};
use crate::pipeline::peers::{ChunkAsk, KvPut};

/// Health answers list the members only up to this many.
pub const HEALTH_MEMBERS: usize = 64;

/// The answer header naming the tier a chunk came from.
pub const TIER: &str = "x-cistern-tier";
/// The answer header present when the node asked the origin for the metadata.
pub const FETCHED: &str = "x-cistern-fetched";
/// The answer header naming the chunk that follows metadata.
pub const CHUNK_INDEX: &str = "x-cistern-chunk";

/// The answer headers the answer's MAC covers, in a fixed order: the tier, the chunk that
/// follows metadata, and whether the origin was asked.
pub fn described(tier: Option<&str>, chunk: Option<&str>, fetched: Option<&str>) -> String {
    format!(
        "{}|{}|{}",
        tier.unwrap_or(""),
        chunk.unwrap_or(""),
        fetched.unwrap_or("")
    )
}

/// An error answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// [`ErrorKind::as_str`].
    pub kind: String,
    /// The client-safe message.
    pub message: String,
    /// The origin answered for a delete marker ([`crate::error::DeleteMarker`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_marker: bool,
    /// That marker's version id, when the origin named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

impl ErrorBody {
    /// The answer for `e`.
    pub fn of(e: &Error) -> Self {
        let marker = e.delete_marker();
        Self {
            kind: e.kind().as_str().to_string(),
            message: e.message().to_string(),
            delete_marker: marker.is_some(),
            version_id: marker.and_then(|m| m.version_id.clone()),
        }
    }

    /// The error it stands for (`None`: a kind this node does not know).
    pub fn error(self) -> Option<Error> {
        let e = Error::new(ErrorKind::parse(&self.kind)?, self.message);
        Some(if self.delete_marker {
            e.with_delete_marker(crate::error::DeleteMarker {
                version_id: self.version_id,
            })
        } else {
            e
        })
    }
}

/// A health answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    /// The answering process's random instance id.
    pub instance: String,
    /// Its weight.
    pub weight: f64,
    /// Its membership epoch.
    pub epoch: u64,
    /// Its zone ("" when it has none).
    #[serde(default)]
    pub zone: String,
    /// How many members it knows.
    #[serde(default)]
    pub member_count: usize,
    /// Its view of the members: address → alive | suspect | dead; only in small clusters
    /// (up to [`HEALTH_MEMBERS`] members), so a probe's answer stays small at any size.
    #[serde(default)]
    pub members: Vec<(String, String)>,
}

/// Errors about the object itself: the same anywhere in the cluster, so final. (A node that
/// does not know the bucket runs another configuration: ask elsewhere.)
pub fn is_final(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::NotFound
            | ErrorKind::ObjectChanged
            | ErrorKind::PreconditionFailed
            | ErrorKind::AccessDenied
            | ErrorKind::Throttled
            | ErrorKind::OriginUnavailable
            | ErrorKind::OriginTimeout
    )
}

/// The query of a chunk request.
pub fn chunk_query(a: &ChunkAsk) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("b", &a.bucket)
        .append_pair("k", &a.key)
        .append_pair("e", &a.etag)
        .append_pair("s", &a.size.to_string())
        .append_pair("i", &a.index.to_string())
        .append_pair("cs", &a.chunk_size.to_string());
    if let Some(v) = &a.via {
        q.append_pair("via", v);
    }
    if let Some((s, e)) = a.part {
        q.append_pair("r", &format!("{s}-{e}"));
    }
    if let Some(p) = a.pin {
        q.append_pair("pin", &p.to_string());
    }
    if a.cached_only {
        q.append_pair("oc", "1");
    }
    q.finish()
}

/// The query of a metadata or invalidation request.
pub fn meta_query(bucket: &str, key: &str, want: Option<u64>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("b", bucket).append_pair("k", key);
    if let Some(w) = want {
        q.append_pair("w", &w.to_string());
    }
    q.finish()
}

/// A request's query parameters.
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a query string.
    pub fn parse(q: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn opt(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A required parameter.
    pub fn get(&self, name: &str) -> Result<&str> {
        self.opt(name).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("missing parameter {name}"),
            )
        })
    }

    /// A required number.
    pub fn num(&self, name: &str) -> Result<u64> {
        self.get(name)?
            .parse()
            .map_err(|_| Error::new(ErrorKind::InvalidArgument, format!("bad number {name}")))
    }

    /// An optional number.
    pub fn opt_num(&self, name: &str) -> Result<Option<u64>> {
        self.opt(name).map(|_| self.num(name)).transpose()
    }

    /// The chunk a request names.
    pub fn chunk(&self) -> Result<ChunkAsk> {
        Ok(ChunkAsk {
            bucket: Arc::from(self.get("b")?),
            key: Arc::from(self.get("k")?),
            etag: Arc::from(self.get("e")?),
            size: self.num("s")?,
            index: self.num("i")?,
            chunk_size: self.num("cs")?,
            via: self.opt("via").map(Arc::from),
            part: match self.opt("r") {
                None => None,
                Some(r) => Some(
                    r.split_once('-')
                        .and_then(|(s, e)| Some((s.parse().ok()?, e.parse().ok()?)))
                        .filter(|(s, e): &(usize, usize)| s < e)
                        .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "bad part"))?,
                ),
            },
            pin: self.opt_num("pin")?,
            cached_only: self.opt("oc") == Some("1"),
        })
    }
}

/// A metadata record followed by bytes, as metadata answers, cache-only reads and commits
/// carry them: the record's length (`u32`), the record, then `rest`.
pub fn framed(meta: &ObjectMeta, rest: &[u8]) -> Bytes {
    let record = meta.to_bytes();
    let mut body = BytesMut::with_capacity(4 + record.len() + rest.len());
    body.put_u32(record.len() as u32);
    body.put_slice(&record);
    body.put_slice(rest);
    body.freeze()
}

/// The metadata and the bytes after it in a [`framed`] body; `None` when malformed.
pub fn unframe(mut body: Bytes) -> Option<(ObjectMeta, Bytes)> {
    if body.len() < 4 {
        return None;
    }
    let n = body.get_u32() as usize;
    if body.len() < n {
        return None;
    }
    let meta = ObjectMeta::from_bytes(body.split_to(n))?;
    Some((meta, body))
}

/// The query of a cache-only object's chunk or commit.
pub fn kv_put_query(p: &KvPut) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("b", &p.space)
        .append_pair("k", &p.key)
        .append_pair("e", &p.etag)
        .append_pair("i", &p.index.to_string());
    if let Some((_, limits)) = &p.commit {
        q.append_pair("c", "1");
        if let Some(quota) = limits.quota {
            q.append_pair("q", &quota.to_string());
        }
        if let Some(ttl) = limits.ttl {
            q.append_pair("t", &ttl.as_secs().max(1).to_string());
        }
    }
    q.finish()
}

/// The query of a cache-only object's read (`range` `None`: metadata only).
pub fn kv_get_query(
    space: &str,
    key: &str,
    range: Option<&std::ops::Range<u64>>,
    if_match: Option<&str>,
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("b", space).append_pair("k", key);
    if let Some(r) = range {
        q.append_pair("r", &format!("{}-{}", r.start, r.end));
    }
    if let Some(e) = if_match {
        q.append_pair("e", e);
    }
    q.finish()
}

/// The query of a node's page of a cache-only listing.
pub fn kv_list_query(space: &str, lq: &ListQuery) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("b", space)
        .append_pair("p", &lq.prefix)
        .append_pair("n", &lq.max_keys.to_string());
    if let Some(d) = &lq.delimiter {
        q.append_pair("d", d);
    }
    if let ListCursor::V1 { marker: Some(m) } = &lq.cursor {
        q.append_pair("m", m);
    }
    q.finish()
}

/// A node's page of a cache-only listing.
#[derive(Debug, Serialize, Deserialize)]
pub struct KvListing {
    /// (key, size, ETag, last modified in ms since the epoch).
    pub entries: Vec<(String, u64, String, u64)>,
    /// Common prefixes.
    pub prefixes: Vec<String>,
    /// Whether the node holds more.
    pub truncated: bool,
}

impl KvListing {
    /// The wire form of a page.
    pub fn of(p: ListPage) -> Self {
        let ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        Self {
            entries: p
                .entries
                .into_iter()
                .map(|e| (e.key, e.size, e.etag, ms(e.last_modified)))
                .collect(),
            prefixes: p.common_prefixes,
            truncated: p.truncated,
        }
    }

    /// The page it stands for.
    pub fn page(self) -> ListPage {
        ListPage {
            entries: self
                .entries
                .into_iter()
                .map(|(key, size, etag, ms)| ListEntry {
                    key,
                    size,
                    etag,
                    last_modified: std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
                    owner: None,
                })
                .collect(),
            common_prefixes: self.prefixes,
            truncated: self.truncated,
            next: None,
        }
    }
}

impl Query {
    /// The listing a `kv_list_query` names.
    pub fn kv_list(&self) -> Result<ListQuery> {
        Ok(ListQuery {
            prefix: self.get("p")?.to_string(),
            delimiter: self.opt("d").map(str::to_string),
            max_keys: usize::try_from(self.num("n")?).unwrap_or(usize::MAX),
            cursor: ListCursor::V1 {
                marker: self.opt("m").map(str::to_string),
            },
        })
    }

    /// The byte range a `kv_get_query` names, if any.
    pub fn kv_range(&self) -> Result<Option<std::ops::Range<u64>>> {
        self.opt("r")
            .map(|r| {
                r.split_once('-')
                    .and_then(|(s, e)| Some(s.parse().ok()?..e.parse().ok()?))
                    .filter(|r: &std::ops::Range<u64>| r.start <= r.end)
                    .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "bad range"))
            })
            .transpose()
    }

    /// An optional text parameter.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.opt(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_queries_round_trip_odd_keys() {
        let a = ChunkAsk {
            bucket: "b".into(),
            key: "dir/a b&c=d+é?".into(),
            etag: "\"x\"".into(),
            size: 10 << 20,
            index: 2,
            chunk_size: 4 << 20,
            via: Some("10.0.0.1:7070".into()),
            part: Some((4096, 8192)),
            pin: Some(3600),
            cached_only: true,
        };
        let q = Query::parse(Some(&chunk_query(&a)));
        let b = q.chunk().expect("parses");
        assert_eq!((b.part, b.pin, b.cached_only), (a.part, a.pin, true));
        assert_eq!(
            (
                b.bucket,
                b.key,
                b.etag,
                b.size,
                b.index,
                b.chunk_size,
                b.via
            ),
            (
                a.bucket,
                a.key,
                a.etag,
                a.size,
                a.index,
                a.chunk_size,
                a.via
            )
        );
        assert!(Query::parse(Some("b=x&k=y")).chunk().is_err());
        assert!(Query::parse(Some("b=x&k=y&w=z")).opt_num("w").is_err());
    }
}
