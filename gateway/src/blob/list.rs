//! Containers and listings: List Containers, List Blobs (with `include=`), container
//! properties, and the briefly cached container list.

use std::sync::Arc;
use std::time::SystemTime;

use cistern_cache::ObjectMeta;
use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, StatusCode};

use super::error::BlobError;
use super::xml::{self, BlobItem, ContainerItem, ListBlobsEcho, Listed};
use super::{get, quoted, set, xml_response, BlobFront, ContainerList, Reply};
use crate::origin::{ListCursor, ListQuery};
use crate::pipeline::Conditions;

/// Most entries in one List Blobs or List Containers page.
const MAX_RESULTS: usize = 5000;

/// Most entries in one `include=metadata` List Blobs page.
const MAX_METADATA_RESULTS: usize = 500;

/// How many metadata lookups a `include=metadata` listing runs at once.
const LIST_METADATA_CONCURRENCY: usize = 16;

/// How long the container list is reused.
const CONTAINER_LIST_TTL: std::time::Duration = std::time::Duration::from_secs(10);

impl BlobFront {
    pub(super) fn invalidate_containers(&self) {
        *self.containers.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    async fn container_list(&self) -> crate::error::Result<ContainerList> {
        let lock = || self.containers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, list)) = lock().as_ref() {
            if at.elapsed() < CONTAINER_LIST_TTL {
                return Ok(Arc::clone(list));
            }
        }
        let list = Arc::new(self.pipeline.catalog().list().await?);
        *lock() = Some((std::time::Instant::now(), Arc::clone(&list)));
        Ok(list)
    }

    pub(super) async fn container_properties(&self, container: &str) -> Result<Reply, BlobError> {
        let b = self.bucket(container).await?;
        let created = self
            .container_list()
            .await
            .ok()
            .and_then(|all| {
                all.iter()
                    .find(|b| b.name == container)
                    .and_then(|b| b.created)
            })
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut h = HeaderMap::new();
        set(&mut h, "last-modified", &xml::http_date(created));
        set(&mut h, "etag", &quoted(&container_etag(created)));
        set(&mut h, "x-ms-lease-status", "unlocked");
        set(&mut h, "x-ms-lease-state", "available");
        set(&mut h, "x-ms-has-immutability-policy", "false");
        set(&mut h, "x-ms-has-legal-hold", "false");
        if b.public_read {
            set(&mut h, "x-ms-blob-public-access", "container");
        }
        Ok(Reply::empty(StatusCode::OK, h))
    }

    pub(super) async fn list_containers(
        &self,
        account: &str,
        q: &[(String, String)],
        endpoint: &str,
    ) -> Result<Reply, BlobError> {
        let prefix = get(q, "prefix");
        let marker = get(q, "marker").filter(|m| !m.is_empty());
        let max = max_results(q)?;
        let with_metadata = container_includes(q)?;
        let all = self.pipeline.catalog().list().await?;
        // The marker is the last name of the previous page: the page starts after it.
        let mut visible = all
            .into_iter()
            .filter(|b| self.policy.can_see(account, &b.name))
            .filter(|b| prefix.is_none_or(|p| b.name.starts_with(p)))
            .filter(|b| marker.is_none_or(|m| b.name.as_str() > m));
        let items: Vec<ContainerItem> = visible
            .by_ref()
            .take(max.unwrap_or(MAX_RESULTS))
            .map(|b| {
                let t = b.created.unwrap_or(SystemTime::UNIX_EPOCH);
                ContainerItem {
                    name: b.name,
                    last_modified: t,
                    // Container listings quote ETags (blob listings do not), as Azure does.
                    etag: quoted(&container_etag(t)),
                    origin: b.listing,
                }
            })
            .collect();
        let next = visible.next().and(items.last()).map(|c| c.name.clone());
        xml_response(xml::list_containers(
            endpoint,
            prefix,
            marker,
            max,
            &items,
            with_metadata,
            next.as_deref(),
        ))
    }

    pub(super) async fn list_blobs(
        &self,
        container: &str,
        q: &[(String, String)],
        endpoint: &str,
    ) -> Result<Reply, BlobError> {
        let b = self.bucket(container).await?;
        let prefix = get(q, "prefix");
        let delimiter = get(q, "delimiter").filter(|d| !d.is_empty());
        let marker = get(q, "marker").filter(|m| !m.is_empty());
        let max = max_results(q)?;
        let include = includes(q)?;
        // With metadata, each blob may cost a HEAD at the origin: smaller pages bound that
        // (a page may hold fewer than maxresults; the marker carries on).
        let page_max = if include.metadata {
            max.unwrap_or(MAX_RESULTS).min(MAX_METADATA_RESULTS)
        } else {
            max.unwrap_or(MAX_RESULTS)
        };
        let query = ListQuery {
            prefix: prefix.unwrap_or("").to_string(),
            delimiter: delimiter.map(str::to_string),
            max_keys: page_max,
            cursor: ListCursor::V1 {
                marker: marker.map(str::to_string),
            },
        };
        let page = self.pipeline.list(&b, &query).await?;
        let metas: Vec<Option<Arc<ObjectMeta>>> = if include.metadata {
            let keys: Vec<String> = page.entries.iter().map(|e| e.key.clone()).collect();
            futures::stream::iter(keys)
                .map(|key| {
                    // Owned handles: the stream lives inside the response future.
                    let (pipeline, b) = (Arc::clone(&self.pipeline), Arc::clone(&b));
                    async move {
                        match pipeline.head(&b, &key, None, &Conditions::default()).await {
                            Ok((m, _, _)) => Ok(Some(m)),
                            // Deleted since it was listed: listed without metadata.
                            Err(err) if err.kind() == crate::error::ErrorKind::NotFound => Ok(None),
                            Err(err) => Err(err),
                        }
                    }
                })
                .buffered(LIST_METADATA_CONCURRENCY)
                .try_collect()
                .await?
        } else {
            vec![None; page.entries.len()]
        };
        let mut items: Vec<Listed> = page
            .entries
            .iter()
            .zip(metas)
            .map(|(e, m)| {
                // Metadata of the version listed, when the lookup found that version.
                let m = m.filter(|m| m.etag == e.etag);
                Listed::Blob(BlobItem {
                    name: e.key.clone(),
                    size: e.size,
                    // Listings carry ETags unquoted, as Azure writes them.
                    etag: e.etag.clone(),
                    last_modified: e.last_modified,
                    created: m.as_ref().and_then(|m| m.created),
                    content_type: m.as_ref().and_then(|m| m.content_type.clone()),
                    content_md5: m.as_ref().and_then(|m| m.content_md5.clone()),
                    blob_type: m
                        .as_ref()
                        .and_then(|m| m.origin_kind.clone())
                        .unwrap_or_else(|| "BlockBlob".to_string()),
                    metadata: include
                        .metadata
                        .then(|| m.map(|m| m.user_metadata.clone()).unwrap_or_default()),
                })
            })
            .collect();
        items.extend(page.common_prefixes.iter().cloned().map(Listed::Prefix));
        items.sort_by(|a, b| name_of(a).cmp(name_of(b)));
        let echo = ListBlobsEcho {
            endpoint,
            container,
            prefix,
            marker,
            max,
            delimiter,
        };
        let next = if page.truncated {
            page.next.clone()
        } else {
            None
        };
        xml_response(xml::list_blobs(&echo, &items, next.as_deref()))
    }
}

fn name_of(l: &Listed) -> &str {
    match l {
        Listed::Blob(b) => &b.name,
        Listed::Prefix(p) => p,
    }
}

/// Containers have no ETag of their own here: one derived from the creation time stays
/// stable across requests.
pub(super) fn container_etag(t: SystemTime) -> String {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("0x{ms:X}")
}

fn max_results(q: &[(String, String)]) -> Result<Option<usize>, BlobError> {
    match get(q, "maxresults") {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Some((n as usize).min(MAX_RESULTS))),
            _ => Err(BlobError::new(
                StatusCode::BAD_REQUEST,
                "OutOfRangeQueryParameterValue",
                "One of the query parameters specified in the request URI is outside the permissible range.",
            )
            .with_detail("QueryParameterName", "maxresults")),
        },
    }
}

/// List Containers' `include=`: whether `metadata` is asked. `deleted` and `system` are
/// accepted and add nothing: Cistern's namespace holds its live buckets only.
fn container_includes(q: &[(String, String)]) -> Result<bool, BlobError> {
    let mut metadata = false;
    for (_, v) in q.iter().filter(|(k, _)| k.eq_ignore_ascii_case("include")) {
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.to_ascii_lowercase().as_str() {
                "metadata" => metadata = true,
                "deleted" | "system" => {}
                _ => {
                    return Err(BlobError::invalid_query(
                        "include",
                        item,
                        "Value for one of the query parameters specified in the request URI is invalid.",
                    ))
                }
            }
        }
    }
    Ok(metadata)
}

#[derive(Debug, Default)]
struct Include {
    metadata: bool,
}

/// `include=`: `metadata` is served; the dataset-history kinds (snapshots, versions,
/// deleted, uncommitted) are not, and say so; the rest only add fields Cistern omits.
fn includes(q: &[(String, String)]) -> Result<Include, BlobError> {
    let mut inc = Include::default();
    for (k, v) in q {
        if !k.eq_ignore_ascii_case("include") {
            continue;
        }
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.to_ascii_lowercase().as_str() {
                "metadata" => inc.metadata = true,
                "snapshots" | "versions" | "deleted" | "uncommittedblobs"
                | "deletedwithversions" => {
                    return Err(BlobError::not_implemented(&format!(
                        "List Blobs with include={item}"
                    )))
                }
                "copy" | "tags" | "immutabilitypolicy" | "legalhold" | "permissions"
                | "system" => {}
                _ => {
                    return Err(BlobError::invalid_query(
                        "include",
                        item,
                        "Value for one of the query parameters specified in the request URI is invalid.",
                    ))
                }
            }
        }
    }
    Ok(inc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::query_pairs;

    #[test]
    fn include_values() {
        let q = |s: &str| query_pairs(s);
        assert!(includes(&q("include=metadata")).expect("ok").metadata);
        assert!(!includes(&q("include=copy,tags")).expect("ok").metadata);
        assert_eq!(
            includes(&q("include=snapshots"))
                .err()
                .map(|e| e.code.into_owned()),
            Some("NotImplemented".to_string())
        );
        assert_eq!(
            includes(&q("include=bogus"))
                .err()
                .map(|e| e.code.into_owned()),
            Some("InvalidQueryParameterValue".to_string())
        );
    }
}
