//! The Data Lake Storage Gen2 (DFS) face of the Azure front, for Hadoop's ABFS driver (Spark's
//! `abfs://`) and the Data Lake SDKs. It shares the Blob front's listener (a DFS-shaped
//! request, or any request to a `<account>.dfs.<domain>` host, comes here), its accounts,
//! authentication and authorization (each DFS operation is authorized as the Blob operation
//! with the same needs), and its pipeline: reads go through the cache.
//!
//! Every origin is addressed through the same [`crate::origin::Origin`] calls, so a DFS client
//! sees a hierarchical namespace over a flat one:
//! - a directory is implied by the paths beneath it, and an empty one is a folder marker, an
//!   empty object `dir/` (on a directory origin, the directory itself);
//! - append stages a block per call (its id encodes the position), flush commits the staged
//!   blocks that run contiguously from the file's length up to the flush position;
//! - rename and recursive delete are a copy and delete per object, not atomic.
//!
//! [`router`] parses requests; [`error`] renders errors as the DFS endpoint does (JSON);
//! [`path`] holds the path operations, [`lease`] their leases and [`list`] List Paths.

pub mod error;
mod lease;
mod list;
mod path;
pub mod router;

use std::net::IpAddr;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use self::router::{DfsOp, DfsRouted};
use super::auth::Caller;
use super::error::BlobError;
use super::router::Routed;
use super::{get, header, query_pairs, set, BlobBody, BlobFront, Reply, RequestBody};
use crate::origin::{Dialect, Passthrough};
use crate::pipeline::BucketBinding;

pub(super) use self::error::error_reply;

/// Whether a request on the shared listener is DFS-shaped (see [`router::wanted`]). Most
/// requests are Blob reads: the raw query is looked at before anything is decoded.
pub fn wanted(parts: &http::request::Parts) -> bool {
    let raw = parts.uri.query().unwrap_or("");
    let method = &parts.method;
    let rename = parts.headers.contains_key("x-ms-rename-source");
    if *method == Method::OPTIONS {
        return false; // a CORS preflight: the Blob front answers it, whatever its URL
    }
    if !(rename
        || *method == Method::PATCH
        || *method == Method::POST
        || raw.contains("resource=")
        || raw.contains("action=")
        || raw.contains("recursive="))
    {
        return false;
    }
    router::wanted(method, &query_pairs(raw), rename)
}

/// The owner, group and permissions Cistern reports: the namespace behind it has no POSIX
/// identities or ACLs, so every path belongs to the superuser and is open to the caller that
/// Cistern's own authorization already let in.
const OWNER: &str = "$superuser";
const PERMISSIONS_FILE: &str = "rw-r-----";
const PERMISSIONS_DIR: &str = "rwxr-x---";

fn posix_headers(h: &mut HeaderMap, dir: bool) {
    set(h, "x-ms-owner", OWNER);
    set(h, "x-ms-group", OWNER);
    let perms = if dir {
        PERMISSIONS_DIR
    } else {
        PERMISSIONS_FILE
    };
    set(h, "x-ms-permissions", perms);
}

/// `x-ms-properties`: `name=base64(value)` pairs, comma-separated, as user metadata.
fn parse_properties(raw: &str) -> Result<Vec<(String, String)>, BlobError> {
    use base64::Engine as _;
    let bad = || {
        BlobError::invalid_header(
            "x-ms-properties",
            "The x-ms-properties header is not a list of name=base64(value) pairs.",
        )
    };
    let mut out = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').ok_or_else(bad)?;
        let value = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| bad())?;
        let value = String::from_utf8(value).map_err(|_| bad())?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(bad());
        }
        out.push((name.to_ascii_lowercase(), value));
    }
    out.sort();
    Ok(out)
}

/// User metadata as `x-ms-properties`.
fn properties_header(meta: &[(String, String)]) -> String {
    use base64::Engine as _;
    meta.iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                base64::engine::general_purpose::STANDARD.encode(v.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl BlobFront {
    /// Routes, admits and runs one DFS request.
    pub(super) async fn dfs_dispatch(
        &self,
        parts: &http::request::Parts,
        body: RequestBody,
        peer: Option<IpAddr>,
        host_account: Option<&str>,
    ) -> (Result<Reply, BlobError>, &'static str) {
        let query = query_pairs(parts.uri.query().unwrap_or(""));
        if let Some(e) = super::refuse_duplicates(&query) {
            return (Err(e), "unknown");
        }
        let routed = match router::route(
            &parts.method,
            host_account,
            parts.uri.path(),
            &query,
            parts.headers.contains_key("x-ms-rename-source"),
        ) {
            Ok(r) => r,
            Err(e) => return (Err(e.into()), "unknown"),
        };
        let op = routed.op.name();
        let result = async {
            let caller = self.admit(&as_blob(&routed), parts, &query, peer).await?;
            self.dfs_operate(&routed, &caller, parts, &query, peer, body)
                .await
        }
        .await;
        (result, op)
    }

    async fn dfs_operate(
        &self,
        r: &DfsRouted,
        caller: &Caller,
        parts: &http::request::Parts,
        q: &[(String, String)],
        peer: Option<IpAddr>,
        body: RequestBody,
    ) -> Result<Reply, BlobError> {
        let fs = r.filesystem.as_deref().unwrap_or("");
        let path = r.path.as_deref().unwrap_or("");
        let h = &parts.headers;
        match r.op {
            DfsOp::ListFilesystems => self.list_filesystems(q).await,
            DfsOp::CreateFilesystem => {
                let props = parse_properties(header(h, "x-ms-properties").unwrap_or(""))?;
                self.pipeline.create_bucket(fs).await?;
                self.invalidate_containers();
                if !props.is_empty() {
                    let b = self.bucket(fs).await?;
                    self.set_filesystem_properties(&b, &props).await?;
                }
                let mut reply = self.container_properties(fs).await?;
                reply.status = StatusCode::CREATED;
                set(&mut reply.headers, "x-ms-namespace-enabled", "false");
                Ok(reply)
            }
            DfsOp::DeleteFilesystem => {
                let b = self.bucket(fs).await?;
                self.delete_under(&b, "").await?;
                self.pipeline.delete_bucket(&b).await?;
                self.invalidate_containers();
                Ok(Reply::empty(StatusCode::ACCEPTED, HeaderMap::new()))
            }
            DfsOp::GetFilesystemProperties => {
                let mut reply = self.container_properties(fs).await?;
                let b = self.bucket(fs).await?;
                let props = self.filesystem_properties(&b).await?;
                set(&mut reply.headers, "x-ms-namespace-enabled", "false");
                set(
                    &mut reply.headers,
                    "x-ms-properties",
                    &properties_header(&props),
                );
                Ok(reply)
            }
            DfsOp::SetFilesystemProperties => {
                let props = parse_properties(header(h, "x-ms-properties").unwrap_or(""))?;
                let b = self.bucket(fs).await?;
                self.set_filesystem_properties(&b, &props).await?;
                self.invalidate_containers();
                self.container_properties(fs).await
            }
            DfsOp::ListPaths => self.list_paths(fs, q).await,
            DfsOp::CreateFile | DfsOp::CreateDirectory => {
                drop(body);
                self.create_path(fs, path, r.op == DfsOp::CreateDirectory, h)
                    .await
            }
            DfsOp::Rename => {
                drop(body);
                self.rename(r, caller, h, peer).await
            }
            DfsOp::Append => self.append(fs, path, q, h, body).await,
            DfsOp::Flush => {
                drop(body);
                self.flush(fs, path, q, h).await
            }
            DfsOp::SetProperties => {
                drop(body);
                self.set_path_properties(fs, path, h).await
            }
            DfsOp::Read => {
                let mut reply = self.get_blob(fs, path, h).await?;
                set(&mut reply.headers, "x-ms-resource-type", "file");
                Ok(reply)
            }
            DfsOp::GetProperties | DfsOp::GetStatus | DfsOp::GetAccessControl => {
                self.path_properties(fs, path, r.op, h).await
            }
            DfsOp::Delete => self.delete_path(fs, path, q, h).await,
            DfsOp::Lease => {
                drop(body);
                self.lease(fs, path, h).await
            }
            DfsOp::Unsupported(_) => Err(BlobError::not_implemented(r.op.name())),
        }
    }

    /// A filesystem's properties: its container's metadata at an Azure origin; other origins
    /// keep none.
    async fn filesystem_properties(
        &self,
        b: &BucketBinding,
    ) -> Result<Vec<(String, String)>, BlobError> {
        if b.origin.dialect() != Dialect::Blob {
            return Ok(Vec::new());
        }
        let mut req = Passthrough::read(Method::HEAD, b.name.clone(), String::new());
        req.query = vec![("restype".into(), "container".into())];
        let resp = self.pipeline.relay(b, req).await?;
        let mut props: Vec<(String, String)> = resp
            .headers
            .iter()
            .filter_map(|(k, v)| {
                let name = k.as_str().strip_prefix("x-ms-meta-")?;
                Some((name.to_string(), v.to_str().ok()?.to_string()))
            })
            .collect();
        props.sort();
        Ok(props)
    }

    /// Replaces a filesystem's properties: Set Container Metadata at an Azure origin (`501`
    /// elsewhere: a directory or an S3 bucket keeps no such thing).
    async fn set_filesystem_properties(
        &self,
        b: &BucketBinding,
        props: &[(String, String)],
    ) -> Result<(), BlobError> {
        if b.origin.dialect() != Dialect::Blob {
            return Err(BlobError::not_implemented(
                "filesystem properties over a non-Azure origin",
            ));
        }
        let mut req = Passthrough::read(Method::PUT, b.name.clone(), String::new());
        req.query = vec![
            ("restype".into(), "container".into()),
            ("comp".into(), "metadata".into()),
        ];
        req.headers = props
            .iter()
            .map(|(k, v)| (format!("x-ms-meta-{k}"), v.clone()))
            .collect();
        self.pipeline.relay(b, req).await?;
        Ok(())
    }

    /// List Filesystems (`GET /?resource=account`): the catalog's buckets as JSON.
    async fn list_filesystems(&self, q: &[(String, String)]) -> Result<Reply, BlobError> {
        let prefix = get(q, "prefix").unwrap_or("");
        let after = get(q, "continuation").filter(|c| !c.is_empty());
        let max = list::max_results(q)?;
        let all = self.pipeline.catalog().list().await?;
        let mut names: Vec<_> = all
            .iter()
            .filter(|b| b.name.starts_with(prefix))
            .filter(|b| after.is_none_or(|a| b.name.as_str() > a))
            .collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        let more = names.len() > max;
        names.truncate(max);
        let items: Vec<_> = names
            .iter()
            .map(|b| {
                let t = b.created.unwrap_or(SystemTime::UNIX_EPOCH);
                serde_json::json!({
                    "name": b.name,
                    "lastModified": super::xml::http_date(t),
                    "etag": super::list::container_etag(t),
                })
            })
            .collect();
        let mut reply = json_reply(&serde_json::json!({ "filesystems": items }));
        if more {
            if let Some(last) = names.last() {
                set(&mut reply.headers, "x-ms-continuation", &last.name);
            }
        }
        Ok(reply)
    }
}

/// The Blob request a DFS request is authorized as.
fn as_blob(r: &DfsRouted) -> Routed {
    Routed {
        op: r.op.as_blob(),
        account: r.account.clone(),
        container: r.filesystem.clone(),
        blob: r.path.clone(),
    }
}

fn json_reply(v: &serde_json::Value) -> Reply {
    let body = Bytes::from(v.to_string());
    let mut h = HeaderMap::new();
    set(&mut h, "content-type", "application/json;charset=utf-8");
    Reply {
        status: StatusCode::OK,
        headers: h,
        length: Some(body.len() as u64),
        body: BlobBody::Full(Some(body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_and_bad_ones_are_refused() {
        let parsed = parse_properties("hello=d29ybGQ=, Spark_Job=Sm9iIDE=").expect("valid");
        assert_eq!(
            parsed,
            vec![
                ("hello".to_string(), "world".to_string()),
                ("spark_job".to_string(), "Job 1".to_string())
            ]
        );
        assert_eq!(
            properties_header(&parsed),
            "hello=d29ybGQ=,spark_job=Sm9iIDE="
        );
        assert!(parse_properties("novalue").is_err());
        assert!(parse_properties("a=!!!").is_err());
        assert!(parse_properties("bad name=YQ==").is_err());
        assert_eq!(parse_properties("").expect("empty"), vec![]);
    }
}
