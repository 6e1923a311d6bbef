//! Keeping the thread pool's other workers awake through a training step.
//!
//! A CPU training step runs hundreds of short parallel sections (matmuls, fused kernels,
//! the optimizer). Between them an idle rayon worker goes to sleep, and waking it costs
//! microseconds each time: on `nanogpt-small` about a tenth of the step went to the kernel's
//! scheduler. [`with_workers_polling`] keeps every other worker in a loop that asks rayon for
//! work (`rayon::yield_now`) instead, as OpenMP's active wait does for PyTorch.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// How long `with_workers_polling` waits for the other workers to start polling before it runs
/// without them (they are busy elsewhere).
const START_WAIT: Duration = Duration::from_millis(1);

/// Whether a `with_workers_polling` is running. One at a time: spinners of two concurrent
/// steps could each end up inside a job the other step waits for, and never return.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Stores its value in its flag when dropped, also while unwinding.
struct StoreOnDrop<'a>(&'a AtomicBool, bool);

impl Drop for StoreOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(self.1, SeqCst);
    }
}

/// Runs `f` on this thread while the pool's other workers poll for work instead of sleeping
/// (so `f`'s parallel sections start at once), then lets them go. With one thread, while
/// another call is running, or when the other workers do not start within [`START_WAIT`], `f`
/// just runs. `f` runs only once every spinner has started (or been told to stop), so no
/// spinner can be picked up later by a wait inside `f` and keep `f` from finishing.
pub(crate) fn with_workers_polling<T>(f: impl FnOnce() -> T) -> T {
    let helpers = rayon::current_num_threads().saturating_sub(1);
    if helpers == 0 || ACTIVE.swap(true, SeqCst) {
        return f();
    }
    let _inactive = StoreOnDrop(&ACTIVE, false);
    let (stop, started) = (AtomicBool::new(false), AtomicUsize::new(0));
    rayon::in_place_scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(|_| {
                started.fetch_add(1, SeqCst);
                while !stop.load(SeqCst) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        let _release = StoreOnDrop(&stop, true);
        let deadline = Instant::now() + START_WAIT;
        while started.load(SeqCst) < helpers && Instant::now() < deadline {
            std::hint::spin_loop();
        }
        if started.load(SeqCst) < helpers {
            // Not all started: a spinner still queued on this thread's own deque must not be
            // picked up by it later and poll forever, so every spinner returns at once.
            stop.store(true, SeqCst);
        }
        f()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn the_result_comes_back_and_the_workers_are_released() {
        for threads in [1, 2, 3] {
            let pool = pool(threads);
            for i in 0..200 {
                let sum = pool.install(|| {
                    with_workers_polling(|| {
                        let (a, b) = rayon::join(|| i, || 2 * i);
                        a + b
                    })
                });
                assert_eq!(sum, 3 * i, "{threads} threads");
            }
        }
    }

    #[test]
    fn concurrent_steps_all_finish() {
        let pool = pool(2);
        pool.install(|| {
            rayon::join(
                || {
                    (0..200).for_each(|_| {
                        assert_eq!(with_workers_polling(|| rayon::join(|| 1, || 2)), (1, 2))
                    })
                },
                || {
                    (0..200).for_each(|_| {
                        assert_eq!(with_workers_polling(|| rayon::join(|| 3, || 4)), (3, 4))
                    })
                },
            )
        });
    }

    #[test]
    fn a_panic_in_the_step_reaches_the_caller() {
        let caught = pool(2)
            .install(|| std::panic::catch_unwind(|| with_workers_polling(|| panic!("boom"))));
        assert!(caught.is_err());
    }
}
