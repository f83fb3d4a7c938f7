use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

fn key(i: u64) -> ChunkKey {
    ChunkKey::for_test(i)
}

async fn open(dir: &std::path::Path) -> ChunkStore {
    ChunkStore::open(
        &StoreConfig {
            dir: Some(dir.to_path_buf()),
            memory_bytes: 8 << 20,
            disk_bytes: 64 << 20,
            chunk_size: 1 << 20,
            piece_size: 64 << 10,
        },
        &Registry::new(),
    )
    .await
    .expect("open")
}

#[tokio::test]
async fn fills_once_then_hits_memory_then_survives_restart_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flight = SingleFlight::default();
    let fills = Arc::new(AtomicUsize::new(0));
    let data = Bytes::from(vec![7u8; 1 << 20]);
    {
        let store = open(dir.path()).await;
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (store, fills, data) = (store.clone(), fills.clone(), data.clone());
            let flight = &flight;
            tasks.push(async move {
                store
                    .get_or_fill(flight, key(0), 1 << 20, 0..1 << 20, move || async move {
                        fills.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        Ok::<_, String>(data)
                    })
                    .await
            });
        }
        let results = futures::future::join_all(tasks).await;
        assert_eq!(fills.load(Ordering::SeqCst), 1);
        assert_eq!(
            results
                .iter()
                .filter(|r| r.as_ref().is_ok_and(|s| s.coalesced))
                .count(),
            15
        );
        let hit = store
            .get_or_fill(&flight, key(0), 1 << 20, 0..1 << 20, || async {
                Err::<Bytes, _>("must not fill".to_string())
            })
            .await
            .expect("memory hit");
        assert_eq!(hit.tier, Tier::Memory);
        store.close().await.expect("close");
    }
    let store = open(dir.path()).await;
    let hit = store
        .get_or_fill(&flight, key(0), 1 << 20, 0..1 << 20, || async {
            Err::<Bytes, _>("must not fill".to_string())
        })
        .await
        .expect("disk hit after restart");
    assert_eq!(hit.tier, Tier::Disk);
    assert_eq!(hit.data, data);
    store.close().await.expect("close");
}

#[tokio::test]
async fn an_ssd_hit_reads_only_the_pieces_its_range_touches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flight = SingleFlight::default();
    let data = Bytes::from(
        (0..(1 << 20))
            .map(|i: u32| (i % 253) as u8)
            .collect::<Vec<u8>>(),
    );
    {
        let store = open(dir.path()).await;
        let d = data.clone();
        store
            .get_or_fill(&flight, key(3), 1 << 20, 0..1 << 20, move || async move {
                Ok::<_, String>(d)
            })
            .await
            .expect("fill");
        store.close().await.expect("close");
    }
    let store = open(dir.path()).await;
    let never = || async { Err::<Bytes, _>("must not fill".to_string()) };
    // Within one 64 KiB piece, and across three pieces.
    for want in [300_000..304_096, 60_000..200_000] {
        let got = store
            .get_or_fill(&flight, key(3), 1 << 20, want.clone(), never)
            .await
            .expect("ssd hit");
        assert_eq!(got.tier, Tier::Disk);
        assert_eq!(got.data, data.slice(want));
    }
    assert!(
        !store.ram.contains(&key(3)),
        "a partial read does not bring the whole chunk into RAM"
    );
    let read = store.log.as_ref().map(|l| l.read_bytes()).unwrap_or(0);
    assert_eq!(
        read,
        5 * (64 << 10),
        "only the touched pieces were read: {read} bytes"
    );
    // A whole-chunk read assembles every piece and brings the chunk back into RAM.
    let whole = store
        .get_or_fill(&flight, key(3), 1 << 20, 0..1 << 20, never)
        .await
        .expect("ssd hit");
    assert_eq!((whole.tier, whole.data), (Tier::Disk, data.clone()));
    let again = store
        .get_or_fill(&flight, key(3), 1 << 20, 5..9, never)
        .await
        .expect("memory hit");
    assert_eq!((again.tier, again.data), (Tier::Memory, data.slice(5..9)));
    store.close().await.expect("close");
}

#[tokio::test]
async fn a_pinned_chunk_is_served_after_the_ram_cache_lets_it_go() {
    let flight = SingleFlight::default();
    let store = ChunkStore::open(
        &StoreConfig {
            dir: None,
            memory_bytes: 8 << 20,
            disk_bytes: 0,
            chunk_size: 1 << 20,
            piece_size: 64 << 10,
        },
        &Registry::new(),
    )
    .await
    .expect("open");
    let data = Bytes::from(vec![5u8; 1 << 20]);
    let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
    store.insert(key(0), data.clone());
    store.insert(key(1), data.clone());
    assert!(store.pin(key(0), data.clone(), later));
    assert!(
        !store.pin(key(2), Bytes::from(vec![0u8; 4 << 20]), later),
        "past half of RAM"
    );
    store.clear_memory();
    assert!(store.in_memory(&key(0)) && !store.in_memory(&key(1)));
    let never = || async { Err::<Bytes, _>("must not fill".to_string()) };
    let got = store
        .get_or_fill(&flight, key(0), 1 << 20, 10..20, never)
        .await
        .expect("pinned");
    assert_eq!((got.tier, got.data), (Tier::Memory, data.slice(10..20)));
    assert_eq!(store.pinned(), (1, 1 << 20, 4 << 20));
}

#[tokio::test]
async fn a_bad_piece_size_is_refused() {
    for piece_size in [0, 1000, 2 << 20] {
        let cfg = StoreConfig {
            dir: None,
            memory_bytes: 8 << 20,
            disk_bytes: 0,
            chunk_size: 1 << 20,
            piece_size,
        };
        assert!(matches!(
            ChunkStore::open(&cfg, &Registry::new()).await,
            Err(OpenError::BadPiece { .. })
        ));
    }
}

/// Flips one byte of a chunk's bytes inside the SSD cache files.
fn corrupt_on_disk(dir: &std::path::Path, needle: &[u8]) -> bool {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() && corrupt_on_disk(&path, needle) {
            return true;
        }
        if !path.is_file() {
            continue;
        }
        let mut bytes = std::fs::read(&path).expect("read");
        if let Some(pos) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[pos + needle.len() / 2] ^= 0xFF;
            std::fs::write(&path, bytes).expect("write");
            return true;
        }
    }
    false
}

#[tokio::test]
async fn a_corrupt_chunk_on_ssd_is_dropped_and_refetched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flight = SingleFlight::default();
    let data = Bytes::from(
        (0..(1 << 20))
            .map(|i: u32| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    {
        let store = open(dir.path()).await;
        let d = data.clone();
        store
            .get_or_fill(&flight, key(9), 1 << 20, 0..1 << 20, move || async move {
                Ok::<_, String>(d)
            })
            .await
            .expect("fill");
        store.close().await.expect("close");
    }
    assert!(
        corrupt_on_disk(dir.path(), &data[1000..1064]),
        "chunk bytes found on disk"
    );
    let store = open(dir.path()).await;
    let fresh = data.clone();
    let got = store
        .get_or_fill(&flight, key(9), 1 << 20, 0..1 << 20, move || async move {
            Ok::<_, String>(fresh)
        })
        .await
        .expect("refetch");
    assert_eq!(got.tier, Tier::Origin, "the corrupt copy is not served");
    assert_eq!(got.data, data);
    store.close().await.expect("close");
}

#[tokio::test]
async fn fill_errors_reach_every_waiter_and_are_not_cached() {
    let flight = SingleFlight::default();
    let store = ChunkStore::open(
        &StoreConfig {
            dir: None,
            memory_bytes: 8 << 20,
            disk_bytes: 0,
            chunk_size: 1 << 20,
            piece_size: 64 << 10,
        },
        &Registry::new(),
    )
    .await
    .expect("open");
    let err = store
        .get_or_fill(&flight, key(1), 1, 0..1, || async {
            Err::<Bytes, _>("origin down".to_string())
        })
        .await
        .expect_err("error");
    assert_eq!(err, "origin down");
    let ok = store
        .get_or_fill(&flight, key(1), 1, 0..1, || async {
            Ok::<_, String>(Bytes::from_static(b"x"))
        })
        .await
        .expect("second try fills");
    assert_eq!(ok.tier, Tier::Origin);
}
