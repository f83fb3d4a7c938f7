use super::*;
use prometheus::Registry;

use crate::store::StoreConfig;

const CS: u64 = 64 << 10;

async fn kv(disk: Option<&std::path::Path>) -> KvStore {
    let store = ChunkStore::open(
        &StoreConfig {
            dir: disk.map(std::path::Path::to_path_buf),
            memory_bytes: 32 << 20,
            disk_bytes: if disk.is_some() { 64 << 20 } else { 0 },
            chunk_size: CS as usize,
            piece_size: 4096,
        },
        &Registry::new(),
    )
    .await
    .expect("open");
    KvStore::new(store, CS)
}

fn meta(size: u64, etag: &str) -> ObjectMeta {
    ObjectMeta {
        size,
        etag: etag.into(),
        ..ObjectMeta::default()
    }
}

fn bytes(size: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..size)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<_>>(),
    )
}

/// Stages `data` as version `etag` of `key`, chunk by chunk, and commits it.
fn put(
    kv: &KvStore,
    key: &str,
    etag: &str,
    data: &Bytes,
    limits: KvLimits,
    now: Instant,
) -> Result<(), KvError> {
    for (i, c) in data.chunks(CS as usize).enumerate() {
        kv.stage("s", key, etag, i as u64, data.slice_ref(c));
    }
    kv.commit("s", key, meta(data.len() as u64, etag), limits, now)
}

#[tokio::test]
async fn reads_back_ranges_across_chunks_and_only_the_committed_version() {
    let kv = kv(None).await;
    let now = Instant::now();
    let data = bytes(3 * CS as usize + 100, 1);
    assert_eq!(
        kv.read("s", "k", 0..10, None, now)
            .await
            .expect_err("must fail"),
        KvError::NotFound
    );
    put(&kv, "k", "v1", &data, KvLimits::default(), now).expect("commit");
    for r in [
        0..1,
        5..CS + 7,
        CS - 1..3 * CS + 100,
        0..u64::MAX,
        3 * CS..3 * CS + 100,
    ] {
        let (m, got, _) = kv.read("s", "k", r.clone(), None, now).await.expect("read");
        assert_eq!(m.etag, "v1");
        let end = r.end.min(data.len() as u64) as usize;
        assert_eq!(got, data.slice(r.start as usize..end), "{r:?}");
    }
    assert_eq!(
        kv.read("s", "k", 0..1, Some("v0"), now)
            .await
            .expect_err("must fail"),
        KvError::Changed
    );
    // A version staged but never committed is invisible; committing it replaces the first.
    let data2 = bytes(10, 2);
    kv.stage("s", "k", "v2", 0, data2.clone());
    assert_eq!(kv.head("s", "k", now).expect("head").etag, "v1");
    kv.commit("s", "k", meta(10, "v2"), KvLimits::default(), now)
        .expect("commit");
    let (_, got, _) = kv.read("s", "k", 0..100, None, now).await.expect("read");
    assert_eq!(got, data2);
    // The old version's chunks went with it.
    assert!(!kv.store.resident(&KvStore::chunk_key("s", "k", "v1", 0)));
    // A commit whose chunks never arrived is refused.
    assert_eq!(
        kv.commit("s", "j", meta(CS + 1, "x"), KvLimits::default(), now),
        Err(KvError::Incomplete)
    );
    assert!(kv.remove("s", "k"));
    assert!(!kv.remove("s", "k"));
    assert_eq!(
        kv.head("s", "k", now).expect_err("must fail"),
        KvError::NotFound
    );
}

#[tokio::test]
async fn quota_evicts_the_least_recently_used_and_never_refuses_a_write_that_fits() {
    let kv = kv(None).await;
    let now = Instant::now();
    let limits = KvLimits {
        quota: Some(3 * 1000),
        ttl: None,
    };
    for k in ["a", "b", "c"] {
        put(&kv, k, "e", &bytes(1000, 0), limits, now).expect("put");
    }
    // Reading "a" makes "b" the least recently used.
    kv.head("s", "a", now).expect("a");
    put(&kv, "d", "e", &bytes(1000, 0), limits, now).expect("put");
    let left: Vec<String> = kv
        .list("s", "", None, now)
        .into_iter()
        .map(|(k, _)| k.to_string())
        .collect();
    assert_eq!(left, ["a", "c", "d"]);
    assert!(!kv.store.resident(&KvStore::chunk_key("s", "b", "e", 0)));
    // One object as large as the quota pushes out everything else.
    put(&kv, "big", "e", &bytes(3000, 0), limits, now).expect("put");
    let u = &kv.usage()[0];
    assert_eq!((u.objects, u.bytes, u.evicted), (1, 3000, 4));
    // Larger than the whole quota: refused, and nothing else is lost.
    assert_eq!(
        put(&kv, "huge", "e", &bytes(3001, 0), limits, now),
        Err(KvError::TooLarge)
    );
    assert_eq!(kv.usage()[0].objects, 1);
}

#[tokio::test]
async fn objects_expire_after_their_ttl() {
    let kv = kv(None).await;
    let t0 = Instant::now();
    let limits = KvLimits {
        quota: None,
        ttl: Some(Duration::from_secs(10)),
    };
    put(&kv, "a", "e", &bytes(10, 0), limits, t0).expect("put");
    put(
        &kv,
        "b",
        "e",
        &bytes(10, 0),
        limits,
        t0 + Duration::from_secs(5),
    )
    .expect("put");
    let t = t0 + Duration::from_secs(11);
    assert_eq!(
        kv.head("s", "a", t).expect_err("must fail"),
        KvError::NotFound
    );
    assert_eq!(kv.list("s", "", None, t).len(), 1);
    kv.head("s", "b", t).expect("b lives");
    let u = &kv.usage()[0];
    assert_eq!((u.objects, u.bytes, u.expired), (1, 10, 1));
    // A rewrite restarts the clock.
    put(&kv, "b", "e2", &bytes(10, 0), limits, t).expect("put");
    kv.head("s", "b", t0 + Duration::from_secs(16))
        .expect("b lives on");
}

#[tokio::test]
async fn lists_in_key_order_after_a_marker_within_a_prefix() {
    let kv = kv(None).await;
    let now = Instant::now();
    for k in ["a/1", "a/2", "a/3", "b/1", "a"] {
        put(&kv, k, "e", &bytes(1, 0), KvLimits::default(), now).expect("put");
    }
    let keys = |v: Vec<(Arc<str>, Arc<ObjectMeta>)>| -> Vec<String> {
        v.into_iter().map(|(k, _)| k.to_string()).collect()
    };
    assert_eq!(keys(kv.list("s", "a/", None, now)), ["a/1", "a/2", "a/3"]);
    assert_eq!(keys(kv.list("s", "a/", Some("a/1"), now)), ["a/2", "a/3"]);
    assert_eq!(
        keys(kv.list("s", "a/", Some("0"), now)),
        ["a/1", "a/2", "a/3"]
    );
    assert_eq!(keys(kv.list("s", "", Some("a/3"), now)), ["b/1"]);
    assert!(kv.list("other", "", None, now).is_empty());
}

#[tokio::test]
async fn an_object_whose_bytes_the_cache_lost_is_gone_not_half_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = kv(Some(dir.path())).await;
    let now = Instant::now();
    let data = bytes(2 * CS as usize, 3);
    put(&kv, "k", "e", &data, KvLimits::default(), now).expect("put");
    // From SSD once RAM let the chunks go.
    kv.store.clear_memory();
    kv.store.flush().await;
    let (_, got, tier) = kv
        .read("s", "k", 10..CS + 10, None, now)
        .await
        .expect("read");
    assert_eq!((got, tier), (data.slice(10..CS as usize + 10), Tier::Disk));
    // A chunk gone from every tier: the object is dropped, counted, and not found.
    kv.store.remove(&KvStore::chunk_key("s", "k", "e", 1));
    assert_eq!(
        kv.read("s", "k", CS..CS + 1, None, now)
            .await
            .expect_err("must fail"),
        KvError::NotFound
    );
    assert_eq!(
        kv.head("s", "k", now).expect_err("must fail"),
        KvError::NotFound
    );
    assert_eq!(
        kv.read("s", "k", 0..1, None, now)
            .await
            .expect_err("must fail"),
        KvError::NotFound
    );
    let u = &kv.usage()[0];
    assert_eq!((u.objects, u.lost), (0, 1));
}

#[tokio::test]
async fn blocks_go_to_ssd_only_when_ram_lets_them_go_and_stay_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = kv(Some(dir.path())).await;
    let now = Instant::now();
    let first = bytes(2 * CS as usize, 7);
    put(&kv, "first", "e", &first, KvLimits::default(), now).expect("put");
    let gone = bytes(CS as usize, 8);
    put(&kv, "gone", "e", &gone, KvLimits::default(), now).expect("put");
    assert!(kv.remove("s", "gone"));
    kv.store.flush().await;
    assert_eq!(kv.store.ssd_chunks(), 0, "written while RAM held them");

    // 48 MiB of objects through a 32 MiB RAM cache: what RAM evicts goes to SSD, and every
    // object reads back whole, whether from RAM, the SSD write queue or the SSD.
    let objects: Vec<Bytes> = (0..96).map(|i| bytes(8 * CS as usize, i as u8)).collect();
    for (i, data) in objects.iter().enumerate() {
        put(&kv, &format!("o/{i}"), "e", data, KvLimits::default(), now).expect("put");
    }
    kv.store.flush().await;
    assert!(kv.store.ssd_chunks() > 0, "nothing was evicted to SSD");
    let (_, got, tier) = kv
        .read("s", "first", 0..first.len() as u64, None, now)
        .await
        .expect("the first object, evicted");
    assert_eq!((got, tier), (first, Tier::Disk));
    // (Reading whole chunks back brings them into RAM, evicting others to SSD again.)
    for (i, data) in objects.iter().enumerate() {
        let (_, got, _) = kv
            .read("s", &format!("o/{i}"), 0..data.len() as u64, None, now)
            .await
            .expect("read");
        assert_eq!(got, *data, "object {i}");
    }
    assert!(kv.head("s", "gone", now).is_err());
}
