//! The DFS front in process: host-style routing (`<account>.dfs.<domain>`), bearer tokens
//! judged by the origin on cache hits too, and DFS-shaped errors. The real client runs in
//! `conformance/tests/test_dfs.py`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use cistern_auth::policy::{BucketScope, Permission, Policy, Principal};
use cistern_auth::Secret;
use cistern_cache::Consistency;

use crate::tests::{blob_body, empty, pattern, setup};

const MIB: usize = 1 << 20;

fn dfs_request(
    method: &str,
    path_and_query: &str,
    token: &str,
    range: Option<&str>,
) -> http::request::Parts {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("host", "acct.dfs.example.net")
        .header("x-ms-version", "2021-06-08")
        .header("x-ms-client-request-id", "abfs-1")
        .header("authorization", format!("Bearer {token}"));
    if let Some(r) = range {
        b = b.header("range", r);
    }
    b.body(()).expect("request").into_parts().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_reads_are_judged_on_every_request_and_hits_skip_the_origin() {
    use base64::Engine as _;
    let s = setup(MIB, Consistency::Immutable).await;
    let data = pattern(2 * MIB + 7, 3);
    s.origin.put("data", "dir/obj", data.clone());
    let policy = Arc::new(Policy::new([Principal {
        access_key: "acct".into(),
        secret: Secret::new(base64::engine::general_purpose::STANDARD.encode(b"dfs-test-key")),
        buckets: BucketScope::Only(vec!["data".into()]),
        permissions: [Permission::Read, Permission::List].into_iter().collect(),
    }]));
    let front = crate::blob::BlobFront::new(
        Arc::clone(&s.pipeline),
        policy,
        vec!["blob.example.net".into()],
    );

    // A plain GET to the DFS host is a DFS read, through the cache.
    let get = || dfs_request("GET", "/data/dir/obj", "good-token", Some("bytes=1-100"));
    let h = front.handle(&get(), empty(), None, "r1").await;
    assert_eq!(h.op, "DfsRead");
    assert_eq!(h.response.status(), 206);
    assert_eq!(h.response.headers()["x-ms-resource-type"], "file");
    assert_eq!(h.response.headers()["x-ms-client-request-id"], "abfs-1");
    assert_eq!(blob_body(h.response.into_body()).await, &data[1..101]);
    let reads = s.origin.reads.load(Ordering::SeqCst);
    let h = front.handle(&get(), empty(), None, "r2").await;
    assert_eq!(h.response.headers()["x-cistern-cache"], "hit");
    assert_eq!(blob_body(h.response.into_body()).await, &data[1..101]);
    assert_eq!(s.origin.reads.load(Ordering::SeqCst), reads, "a hit");
    assert!(s.origin.judged.load(Ordering::SeqCst) >= 1);

    // Another token gets nothing of the cached object, as JSON.
    let h = front
        .handle(
            &dfs_request("GET", "/data/dir/obj", "bad-token", Some("bytes=1-100")),
            empty(),
            None,
            "r3",
        )
        .await;
    assert_eq!(h.response.status(), 403);
    assert_eq!(
        h.response.headers()["x-ms-error-code"],
        "AuthorizationFailure"
    );
    let body = blob_body(h.response.into_body()).await;
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"]["code"], "AuthorizationFailure");

    // Status of a file and of the directory it implies.
    let h = front
        .handle(
            &dfs_request("HEAD", "/data/dir/obj?action=getStatus", "good-token", None),
            empty(),
            None,
            "r4",
        )
        .await;
    assert_eq!(h.response.status(), 200);
    assert_eq!(
        h.response.headers()["content-length"],
        (2 * MIB + 7).to_string()
    );
    let h = front
        .handle(
            &dfs_request("HEAD", "/data/dir?action=getStatus", "good-token", None),
            empty(),
            None,
            "r5",
        )
        .await;
    assert_eq!(h.response.status(), 200);
    assert_eq!(h.response.headers()["x-ms-resource-type"], "directory");
    let h = front
        .handle(
            &dfs_request("HEAD", "/data/nothing?action=getStatus", "good-token", None),
            empty(),
            None,
            "r6",
        )
        .await;
    assert_eq!(h.response.status(), 404);
    assert_eq!(h.response.headers()["x-ms-error-code"], "PathNotFound");

    // A token only the origin can judge does not write (the origin is asked about reads only).
    let h = front
        .handle(
            &dfs_request("PUT", "/data/dir/new?resource=file", "good-token", None),
            empty(),
            None,
            "r7",
        )
        .await;
    assert_eq!(h.response.status(), 403);
    let written = crate::origin::Origin::head(&s.origin, "data", "dir/new").await;
    assert!(written.is_err(), "nothing was written");
}
