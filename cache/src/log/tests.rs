use super::*;

fn key(i: u64) -> ChunkKey {
    ChunkKey::for_test(i)
}

/// Bytes that do not repeat within a chunk (a 64-byte window finds one place).
fn body(i: u64, len: usize) -> Bytes {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

const CHUNK: usize = 1 << 20;

/// A log of `segments` segments for 1 MiB chunks, 4 KiB pieces.
fn open(dir: &Path, segments: usize) -> (ChunkLog, IntCounter) {
    let corrupt = IntCounter::new("c", "c").expect("counter");
    let cfg = LogConfig {
        dir: dir.to_path_buf(),
        capacity: segments * segment_size(CHUNK),
        chunk_size: CHUNK,
        piece: 4096,
    };
    let log = ChunkLog::open(&cfg, &Registry::new(), corrupt.clone()).expect("open");
    (log, corrupt)
}

#[tokio::test]
async fn ranges_read_back_exactly_reading_only_their_pieces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path(), 2);
    let data = body(1, CHUNK - 1000);
    log.append(key(1), data.clone());
    log.flush().await;
    let len = data.len();
    let mut read = 0;
    for want in [
        0..1,
        4095..4097,
        100_000..104_096,
        0..len,
        len - 5..len,
        8192..12288,
    ] {
        let got = log.read(&key(1), len, want.clone()).await.expect("hit");
        assert_eq!(got, data.slice(want.clone()), "{want:?}");
        let span = record::piece_span(&want, len, 4096);
        read += span.len() as u64;
        assert_eq!(log.read_bytes(), read, "{want:?} read {span:?} only");
    }
    assert!(
        log.read(&key(1), len + 1, 0..1).await.is_none(),
        "another length is a miss"
    );
    assert!(log.read(&key(2), len, 0..1).await.is_none());
    assert!(
        log.read(&key(1), len, 5..len + 1).await.is_none(),
        "past the end"
    );
}

#[tokio::test]
async fn a_full_log_reuses_its_oldest_segment_and_recovers_exactly_what_it_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let per_segment = segment_size(CHUNK) / (CHUNK + 2 * ALIGN);
    let total = 3 * per_segment as u64 + 2;
    {
        let (log, _) = open(dir.path(), 3);
        for i in 0..total {
            log.append(key(i), body(i, CHUNK));
            // One at a time: the queue may drop a burst.
            log.flush().await;
        }
        // The first segment was reused for the last two chunks.
        for i in 0..per_segment as u64 {
            assert!(!log.contains(&key(i)), "{i} evicted with its segment");
        }
        for i in per_segment as u64..total {
            assert!(log.contains(&key(i)), "{i} held");
        }
    }
    // Reopened: the same set, although the reused segment still holds stale records past
    // its two new ones.
    let (log, _) = open(dir.path(), 3);
    assert_eq!(log.len(), (total - per_segment as u64) as usize);
    for i in per_segment as u64..total {
        let got = log.read(&key(i), CHUNK, 0..CHUNK).await.expect("recovered");
        assert_eq!(got, body(i, CHUNK), "{i}");
    }
    // And writes go on after the newest record, evicting the oldest segment next.
    log.append(key(1000), body(1000, CHUNK));
    log.flush().await;
    assert!(log.contains(&key(1000)) && log.contains(&key(total - 1)));
    let (log, _) = open(dir.path(), 3);
    assert!(log.contains(&key(1000)) && log.contains(&key(total - 1)));
}

#[tokio::test]
async fn a_damaged_piece_is_refused_counted_and_forgotten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = body(5, CHUNK);
    {
        let (log, _) = open(dir.path(), 2);
        log.append(key(5), data.clone());
        log.flush().await;
    }
    // Flip a byte of the fourth piece, found by its content.
    let seg = dir.path().join("segment-000000");
    let mut bytes = std::fs::read(&seg).expect("read");
    let at = bytes
        .windows(64)
        .position(|w| w == &data[3 * 4096 + 100..3 * 4096 + 164])
        .expect("the chunk's bytes are in its segment");
    bytes[at] ^= 0x40;
    std::fs::write(&seg, bytes).expect("write");
    let (log, corrupt) = open(dir.path(), 2);
    assert_eq!(
        log.read(&key(5), CHUNK, 0..4096).await,
        Some(data.slice(0..4096)),
        "an intact piece of the same chunk still reads"
    );
    assert!(log
        .read(&key(5), CHUNK, 3 * 4096..3 * 4096 + 10)
        .await
        .is_none());
    assert_eq!(corrupt.get(), 1);
    assert!(!log.contains(&key(5)), "the record is forgotten");
}

#[tokio::test]
async fn a_changed_layout_or_salt_starts_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (log, _) = open(dir.path(), 2);
        log.append(key(1), body(1, 8192));
        log.flush().await;
    }
    assert!(open(dir.path(), 2).0.contains(&key(1)));
    // Another segment count: a new layout.
    assert!(!open(dir.path(), 3).0.contains(&key(1)));
    let (log, _) = open(dir.path(), 3);
    log.append(key(2), body(2, 8192));
    log.flush().await;
    drop(log);
    // Another salt: the headers are not believed.
    let layout = dir.path().join("layout");
    let text = std::fs::read_to_string(&layout).expect("layout");
    let (head, _) = text.split_once("salt ").expect("salt line");
    std::fs::write(&layout, format!("{head}salt {}\n", "ab".repeat(32))).expect("write");
    assert!(!open(dir.path(), 3).0.contains(&key(2)));
}

#[test]
fn a_header_decodes_only_with_its_salt_and_intact() {
    let salt = [7u8; 32];
    let data = body(3, 10_000);
    let rec = record::encode(42, &key(3), &data, 4096, &salt).expect("encode");
    let b = rec.bytes();
    let need = record::needed(b).expect("a header");
    let h = record::decode(&b[..need], &salt).expect("decodes");
    assert_eq!(
        (h.seq, h.len, h.key.clone(), h.crcs.len()),
        (42, 10_000, key(3), 3)
    );
    assert_eq!(&b[h.size..h.size + h.len], &data[..]);
    assert_eq!(h.span(), b.len());
    assert!(
        record::decode(&b[..need], &[8u8; 32]).is_none(),
        "another salt"
    );
    // The magic, the seq, the length, the key, a piece CRC (the padding after the tag is not
    // covered).
    for at in [0, 9, 17, 30, 80] {
        let mut bad = b[..need].to_vec();
        bad[at] ^= 1;
        assert!(
            record::needed(&bad).is_none() || record::decode(&bad, &salt).is_none(),
            "byte {at} flipped"
        );
    }
}

#[tokio::test]
async fn a_burst_is_written_in_batches_across_segments_and_recovered_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 12 KiB per record: a 16 MiB segment holds about 1365, so the seventh burst crosses into
    // the second segment inside one batch. (Bursts, and a flush after each.)
    let n = 2000u64;
    {
        let (log, _) = open(dir.path(), 3);
        for burst in 0..n / 200 {
            for i in burst * 200..(burst + 1) * 200 {
                log.append(key(i), body(i, 8192));
            }
            log.flush().await;
        }
        for i in 0..n {
            let got = log.read(&key(i), 8192, 100..8000).await.expect("written");
            assert_eq!(got, body(i, 8192).slice(100..8000), "{i}");
        }
    }
    let (log, _) = open(dir.path(), 3);
    assert_eq!(log.len(), n as usize);
    for i in [0, 1364, 1365, 1366, n - 1] {
        let got = log.read(&key(i), 8192, 0..8192).await.expect("recovered");
        assert_eq!(got, body(i, 8192), "{i}");
    }
}

#[tokio::test]
async fn a_queued_chunk_reads_back_and_a_removed_one_is_never_indexed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path(), 2);
    let (a, b) = (body(1, 3 * 4096), body(2, 3 * 4096));
    log.append(key(1), a.clone());
    log.append(key(2), b);
    // Whether the writer got to them or not: held from the queue until indexed.
    assert!(log.contains(&key(1)));
    assert_eq!(
        log.read(&key(1), a.len(), 4096..8192).await,
        Some(a.slice(4096..8192))
    );
    assert!(log.read(&key(1), a.len() + 1, 0..1).await.is_none());
    log.remove(&key(2));
    assert!(!log.contains(&key(2)));
    log.flush().await;
    assert!(!log.contains(&key(2)) && log.read(&key(2), 3 * 4096, 0..1).await.is_none());
    assert_eq!(log.len(), 1);
    assert!(log.inner.queued().is_empty(), "nothing left behind");
}
