//! Entry points for the fuzz targets in `fuzz/`, compiled only with `--cfg fuzzing` (which
//! `scripts/fuzz` and `cargo fuzz` set). Each takes input as the gateway receives it from a
//! client, an origin or a peer, runs the gateway's own parser over it and checks what that
//! parser promises: a panic is a finding.

use cistern_cache::range::{chunk_spans, RangeSpec};

/// S3 `Range` (the fast path's parser) and Blob `x-ms-range`/`Range`: whatever parses resolves
/// within the object, and its chunk spans tile it exactly, in order.
pub fn ranges(header: &str, size: u64, chunk_size: u64) {
    let chunk_size = chunk_size.clamp(1, 1 << 40);
    let specs = [
        crate::s3::fast::parse_range(header),
        crate::blob::read::parse_range(header),
    ];
    for spec in specs.into_iter().flatten() {
        check_range(spec, size, chunk_size);
    }
}

fn check_range(spec: RangeSpec, size: u64, chunk_size: u64) {
    let Ok(r) = spec.resolve(size) else {
        return;
    };
    assert!(
        r.start < r.end && r.end <= size,
        "{spec:?} of {size} → {r:?}"
    );
    if let Some(first) = spec.known_start() {
        assert_eq!(first, r.start);
    }
    // Bound the work: spans are one per chunk.
    if (r.end - r.start) / chunk_size > 1 << 16 {
        return;
    }
    let mut at = r.start;
    for s in chunk_spans(r.clone(), chunk_size) {
        let chunk_start = s.index * chunk_size;
        assert!(s.start < s.end && s.end as u64 <= chunk_size, "{s:?}");
        assert_eq!(chunk_start + s.start as u64, at, "{s:?} in {r:?}");
        at = chunk_start + s.end as u64;
    }
    assert_eq!(at, r.end);
}

/// Blob XML bodies from clients: a Put Block List body, CORS rules, stored access policies.
pub fn blob_xml(body: &[u8]) {
    if let Ok(blocks) = crate::blob::write::parse_block_list(body) {
        for b in &blocks {
            let id = match b {
                crate::origin::BlockRef::Latest(id)
                | crate::origin::BlockRef::Committed(id)
                | crate::origin::BlockRef::Uncommitted(id) => id,
            };
            assert!(crate::blob::write::valid_block_id(id), "{id:?}");
        }
    }
    let _ = crate::blob::cors::parse_rules(body);
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = crate::blob::auth::parse_signed_identifiers(text);
    }
}

/// Origin answers: S3 and Azure listing pages and S3 error documents.
pub fn origin_xml(body: &str, status: u16) {
    for v2 in [false, true] {
        if let Ok(page) = crate::origin::s3::list::parse_list_page(body, v2) {
            assert!(!page.truncated || v2 || page.next.is_some() || page.entries.is_empty());
        }
    }
    let _ = crate::origin::azure::ops::parse_blob_page(body, None);
    let _ = crate::origin::azure::ops::parse_blob_page(body, Some("m"));
    if let Ok(status) = http::StatusCode::from_u16(status) {
        let _ = crate::origin::s3::error::classify(status, body);
    }
}

/// A Blob Batch body: the parts found are never more than `max + 1`.
pub fn blob_batch(body: &[u8], boundary: &str) {
    if let Ok(parts) = crate::blob::batch::parse(body, boundary, 256) {
        assert!(!parts.is_empty() && parts.len() <= 257);
    }
}

/// A peer request's query and an error answer's JSON.
pub fn peer_wire(query: &str, error_json: &[u8]) {
    let q = crate::peer::wire::Query::parse(Some(query));
    if let Ok(ask) = q.chunk() {
        if let Some((start, end)) = ask.part {
            assert!(start < end);
        }
        // What a node would ask for in turn names the same chunk.
        let again = crate::peer::wire::Query::parse(Some(&crate::peer::wire::chunk_query(&ask)));
        let again = again.chunk().expect("a query Cistern formed parses");
        assert_eq!(
            (again.index, again.size, again.chunk_size),
            (ask.index, ask.size, ask.chunk_size)
        );
        assert_eq!(
            (&*again.bucket, &*again.key, &*again.etag),
            (&*ask.bucket, &*ask.key, &*ask.etag)
        );
    }
    let _ = q.opt_num("w");
    if let Ok(body) = serde_json::from_slice::<crate::peer::wire::ErrorBody>(error_json) {
        let _ = body.error();
    }
}

/// A configuration file: parsed, then resolved into settings (without touching the disk: the
/// embedded default is not taken, nothing is created).
pub fn config(text: &str) {
    let Ok(file) = crate::config::parse_file(text, "fuzz.toml") else {
        return;
    };
    let _ = crate::config::resolve(Some(file), &crate::config::Overrides::default());
    let _ = crate::config::parse_duration(text);
    let _ = crate::config::parse_size(text);
}

/// The principal [`s3_call`]'s front knows: it may read, list, write and delete every bucket.
pub const S3_ACCESS_KEY: &str = "fuzzer";
/// Its secret.
pub const S3_SECRET: &str = "fuzzer-secret-0123456789";
/// The region the front verifies signatures for.
pub const S3_REGION: &str = "us-east-1";

struct S3Harness {
    rt: tokio::runtime::Runtime,
    front: crate::s3::S3Endpoint,
    root: std::path::PathBuf,
    calls: std::sync::atomic::AtomicU64,
}

static S3_HARNESS: std::sync::OnceLock<S3Harness> = std::sync::OnceLock::new();

/// One S3 front over a directory origin (bucket `b` with objects `k0`…), built once per fuzzing
/// process in a scratch directory.
fn s3_harness() -> &'static S3Harness {
    use std::sync::Arc;

    use cistern_auth::policy::{BucketScope, Permission, Policy, Principal};
    use cistern_auth::Secret;
    use cistern_cache::{ChunkStore, Consistency, StoreConfig};

    use crate::pipeline::{BucketBinding, Catalog, Pipeline, PipelineConfig};

    S3_HARNESS.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("cistern-fuzz-s3-{}", std::process::id()));
        std::fs::create_dir_all(root.join("b")).expect("scratch bucket");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let front = rt.block_on(async {
            let metrics = crate::metrics::Metrics::new().expect("metrics");
            let store = ChunkStore::open(
                &StoreConfig {
                    dir: None,
                    memory_bytes: 8 << 20,
                    disk_bytes: 0,
                    chunk_size: 64 * 1024,
                    piece_size: 4096,
                },
                &metrics.registry,
            )
            .await
            .expect("store");
            let origin = crate::origin::fs::FsOrigin::new(&root).expect("fs origin");
            let binding = BucketBinding {
                name: "b".into(),
                origin: Arc::new(origin),
                origin_name: Arc::from("fs"),
                origin_bucket: Arc::from("b"),
                consistency: Consistency::Strict,
                public_read: false,
                populate_on_write: false,
                cache_only: false,
            };
            let pipeline = Arc::new(Pipeline::new(
                Catalog::new(vec![binding], vec![]),
                store,
                PipelineConfig::new(64 * 1024, 2),
                metrics,
            ));
            let policy = Arc::new(Policy::new([Principal {
                access_key: S3_ACCESS_KEY.into(),
                secret: Secret::new(S3_SECRET),
                buckets: BucketScope::All,
                permissions: [
                    Permission::Read,
                    Permission::List,
                    Permission::Write,
                    Permission::Delete,
                ]
                .into_iter()
                .collect(),
            }]));
            crate::s3::service(pipeline, policy, vec![], S3_REGION.into())
        });
        S3Harness {
            rt,
            front,
            root,
            calls: std::sync::atomic::AtomicU64::new(0),
        }
    })
}

/// Sends `req` (already signed by the caller for [`S3_ACCESS_KEY`], or not) through the S3
/// front's s3s path — request parsing, SigV4 and `aws-chunked` decoding, XML bodies, the
/// operations over a directory origin — and reads the whole answer. A 500 is a finding (bad
/// input gets a 4xx) unless `body_may_break` says the body is malformed `aws-chunked`: s3s
/// answers a body it cannot decode for an XML operation (CreateBucket, DeleteObjects…) with
/// 500 InternalError (s3s 0.14.1 `ops::extract_full_body`), before Cistern sees the request.
/// Returns the status.
pub fn s3_call(req: http::Request<bytes::Bytes>, body_may_break: bool) -> u16 {
    use http_body_util::BodyExt;

    let h = s3_harness();
    // Bound what the scratch origin accumulates (objects are few, staged uploads are not).
    if h.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 4096 == 4095 {
        let _ = std::fs::remove_dir_all(h.root.join(".cistern-uploads"));
    }
    let (parts, body) = req.into_parts();
    let shown = format!("{} {} {:?}", parts.method, parts.uri, parts.headers);
    let req = http::Request::from_parts(parts, s3s::Body::from(body));
    h.rt.block_on(async {
        let Ok(resp) = h.front.service.call(req).await else {
            return 0;
        };
        let status = resp.status().as_u16();
        let answer = resp.into_body().collect().await.map(|b| b.to_bytes());
        assert!(
            status != 500 || body_may_break,
            "an internal error for {shown}: {answer:?}"
        );
        status
    })
}
