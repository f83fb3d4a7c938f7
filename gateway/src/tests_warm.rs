//! In-process tests of warm-up jobs over the in-memory origin (the job bookkeeping, the
//! checkpoint and resume, failures), with the read path's test setup.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cistern_cache::Consistency;

use crate::admin::warm::{Jobs, State, WarmSpec};
use crate::pipeline::{CacheStatus, Conditions, Selection};
use crate::tests::{pattern, setup, MIB};

/// A warm-up job fills every object once, reports an object that vanished after it was
/// listed, and a resume skips what its checkpoint holds and warms only the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_jobs_fill_once_report_vanished_objects_and_resume_from_their_checkpoint() {
    let s = setup(MIB, Consistency::Immutable).await;
    for (k, len) in [("p/a", 2 * MIB + 5), ("p/b", 100), ("p/z", MIB)] {
        s.origin.put("data", k, pattern(len, 1));
    }
    s.origin.put("data", "q/other", pattern(10, 2));
    *s.origin.delay.lock().expect("delay") = Duration::from_millis(100);
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = Jobs::new(Arc::clone(&s.pipeline), Some(dir.path().to_path_buf()));
    let spec = WarmSpec {
        bucket: "data".into(),
        prefix: "p/".into(),
        pin_seconds: None,
        concurrency: 1,
    };
    let job = jobs.start(spec).await.unwrap_or_else(|_| panic!("start"));
    // Listed at once; read one at a time, 100 ms each: p/z vanishes before its turn.
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.origin.delete_with_marker("data", "p/z", "m1");
    while job.running() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = job.view();
    assert_eq!(v.state, State::Done);
    assert_eq!(
        (
            v.progress.objects_total,
            v.progress.objects_done,
            v.progress.objects_failed
        ),
        (3, 2, 1)
    );
    assert_eq!(v.progress.failures[0].key, "p/z");
    assert!(
        v.progress.failures[0].reason.starts_with("not_found"),
        "{:?}",
        v.progress.failures
    );
    assert_eq!(v.progress.bytes_fetched, (2 * MIB + 5 + 100) as u64);
    // One origin read per chunk: three for p/a, one for p/b (p/z: its failed read).
    assert_eq!(s.origin.reads.load(Ordering::SeqCst), 5);

    *s.origin.delay.lock().expect("delay") = Duration::ZERO;
    s.origin.put("data", "p/z", pattern(MIB, 3));
    let reads = s.origin.reads.load(Ordering::SeqCst);
    let job = jobs
        .resume(&v.id)
        .await
        .unwrap_or_else(|_| panic!("resume"));
    while job.running() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = job.view();
    assert_eq!(
        (
            v.progress.objects_done,
            v.progress.objects_skipped,
            v.progress.objects_failed
        ),
        (3, 2, 0)
    );
    assert_eq!(
        s.origin.reads.load(Ordering::SeqCst) - reads,
        1,
        "only p/z is read"
    );
    // Every warmed object is now a hit.
    for k in ["p/a", "p/b", "p/z"] {
        let r = s
            .pipeline
            .get(&s.bucket, k, Selection::All, &Conditions::default())
            .await
            .expect("read");
        assert_eq!(r.cache, CacheStatus::Hit, "{k}");
    }
    assert_eq!(s.origin.reads.load(Ordering::SeqCst) - reads, 1);
    // A new Jobs over the same directory finds the job again (as after a restart).
    let again = Jobs::new(Arc::clone(&s.pipeline), Some(dir.path().to_path_buf()));
    let found = again.get(&v.id).expect("loaded from its checkpoint").view();
    assert_eq!((found.state, found.progress.objects_done), (State::Done, 3));
}
