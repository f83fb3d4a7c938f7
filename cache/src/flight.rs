//! Single-flight: concurrent callers asking for the same key share one spawned task.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};

type Inflight<K, V> = Arc<Mutex<HashMap<K, Shared<BoxFuture<'static, V>>>>>;

/// Coalesces concurrent work by key. The work runs in its own task, so a caller that goes
/// away (a client disconnecting) does not cancel it for the others.
pub struct SingleFlight<K, V> {
    inflight: Inflight<K, V>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self {
            inflight: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Runs `work` unless a task for `key` is already in flight, in which case waits for that
    /// task's result. Returns the value and whether this caller started the work.
    pub async fn run<F, Fut>(&self, key: K, work: F) -> (V, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let (shared, leader) = {
            let mut map = lock(&self.inflight);
            match map.get(&key) {
                Some(shared) => (shared.clone(), false),
                None => {
                    let inflight = Arc::clone(&self.inflight);
                    let task_key = key.clone();
                    let fut = work();
                    let handle = tokio::spawn(async move {
                        // Removing under the same lock that inserted makes late callers start
                        // fresh work instead of reading a finished result; doing it on drop
                        // also clears the entry if the work panics.
                        let _done = RemoveOnDrop {
                            map: inflight,
                            key: Some(task_key),
                        };
                        fut.await
                    });
                    let shared = async move {
                        match handle.await {
                            Ok(v) => v,
                            Err(e) => std::panic::resume_unwind(e.into_panic()),
                        }
                    }
                    .boxed()
                    .shared();
                    map.insert(key, shared.clone());
                    (shared, true)
                }
            }
        };
        (shared.await, leader)
    }

    /// How many keys have work in flight.
    pub fn len(&self) -> usize {
        lock(&self.inflight).len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes a key from the in-flight map when the work ends, however it ends.
struct RemoveOnDrop<K: Hash + Eq, V> {
    map: Inflight<K, V>,
    key: Option<K>,
}

impl<K: Hash + Eq, V> Drop for RemoveOnDrop<K, V> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            lock(&self.map).remove(&k);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned map only means a panic happened while holding it; the map itself is intact.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let sf = Arc::new(SingleFlight::<u32, u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let sf = Arc::clone(&sf);
            let runs = Arc::clone(&runs);
            tasks.push(tokio::spawn(async move {
                sf.run(7, || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    42
                })
                .await
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            let (v, leader) = t.await.expect("task");
            assert_eq!(v, 42);
            leaders += usize::from(leader);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert!(sf.is_empty());
    }

    #[tokio::test]
    async fn later_calls_run_again() {
        let sf = SingleFlight::<u32, u32>::default();
        let (a, _) = sf.run(1, || async { 1 }).await;
        let (b, leader) = sf.run(1, || async { 2 }).await;
        assert_eq!((a, b, leader), (1, 2, true));
    }
}
