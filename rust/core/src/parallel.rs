//! The thread pool every operation runs on.
//!
//! Sized by `PREFKIT_NUM_THREADS` (default: all cores). A pool's threads do not survive `fork`
//! (DataLoader workers, multiprocessing), so the pool is keyed by process id and rebuilt in a
//! child instead of dead-locking on threads that no longer exist.

use std::sync::{Arc, Mutex};

use rayon::ThreadPool;

static POOL: Mutex<Option<(u32, Arc<ThreadPool>)>> = Mutex::new(None);

fn threads_from_env() -> usize {
    std::env::var("PREFKIT_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(0) // rayon: 0 means one thread per core
}

/// The pool for this process, built on first use (and again after a `fork`).
pub fn pool() -> Arc<ThreadPool> {
    let pid = std::process::id();
    // A poisoned lock only means another thread panicked while holding it; the Option inside
    // is still consistent.
    let mut slot = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((owner, pool)) = slot.as_ref() {
        if *owner == pid {
            return pool.clone();
        }
    }
    if let Some((_, inherited)) = slot.take() {
        // A pool inherited through fork lost its threads; dropping it would wait on them
        // forever, so it is leaked instead.
        std::mem::forget(inherited);
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads_from_env())
            .thread_name(|i| format!("prefkit-{i}"))
            .build()
            .expect("building a rayon pool only fails when threads cannot be spawned"),
    );
    *slot = Some((pid, pool.clone()));
    pool
}

/// Run `work` on the pool.
pub fn install<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    pool().install(work)
}
