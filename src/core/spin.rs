//! A second thread that spins between jobs, for the many short parallel sections of decoding.
//!
//! Decoding one position runs ~24 one-row products of 50-150 µs each, with a little serial
//! work between them. A rayon worker falls asleep in those gaps, and waking it costs a good
//! part of each product. This helper busy-waits for the next job for [`SPIN`] after each one
//! (as OpenMP's active wait policy does for PyTorch), then parks.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock, TryLockError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long the helper spins for a next job before it parks.
const SPIN: Duration = Duration::from_millis(2);

const IDLE: u8 = 0;
const READY: u8 = 1;
const DONE: u8 = 2;

type Job = Box<dyn FnOnce() + Send>;

struct Helper {
    state: AtomicU8,
    parked: AtomicBool,
    /// Set when the last job panicked; the caller re-raises it.
    failed: AtomicBool,
    job: Mutex<Option<Job>>,
    thread: Thread,
}

/// One caller at a time; a second concurrent caller runs both jobs itself.
static CALLER: Mutex<()> = Mutex::new(());
static HELPER: OnceLock<&'static Helper> = OnceLock::new();

fn helper() -> &'static Helper {
    HELPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<&'static Helper>();
        std::thread::Builder::new()
            .name("aigc-decode-helper".into())
            .spawn(move || {
                let me: &'static Helper = Box::leak(Box::new(Helper {
                    state: AtomicU8::new(IDLE),
                    parked: AtomicBool::new(false),
                    failed: AtomicBool::new(false),
                    job: Mutex::new(None),
                    thread: std::thread::current(),
                }));
                tx.send(me).expect("the caller waits for the helper");
                me.serve();
            })
            .expect("spawning the decode helper thread");
        rx.recv().expect("the helper starts")
    })
}

impl Helper {
    fn serve(&self) -> ! {
        loop {
            let started = Instant::now();
            while self.state.load(SeqCst) != READY {
                if started.elapsed() < SPIN {
                    std::hint::spin_loop();
                    continue;
                }
                self.parked.store(true, SeqCst);
                if self.state.load(SeqCst) != READY {
                    std::thread::park();
                }
                self.parked.store(false, SeqCst);
            }
            let job = self.job.lock().expect("job slot").take();
            if let Some(job) = job {
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_ok();
                self.failed.store(!ok, SeqCst);
            }
            self.state.store(DONE, SeqCst);
        }
    }
}

/// Runs `a` on the calling thread and `b` on the helper, and returns when both are done.
pub fn join<A: FnOnce() + Send, B: FnOnce() + Send>(a: A, b: B) {
    let _only_caller = match CALLER.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(), // an earlier job panicked
        Err(TryLockError::WouldBlock) => {
            a();
            b();
            return;
        }
    };
    let helper = helper();
    let job: Box<dyn FnOnce() + Send + '_> = Box::new(b);
    // SAFETY: `join` does not return before the helper has run the job and signalled DONE
    // (also when `a` panics: the wait below runs in a guard), so the job's borrows outlive it.
    let job: Job = unsafe { std::mem::transmute(job) };
    *helper.job.lock().expect("job slot") = Some(job);
    helper.state.store(READY, SeqCst);
    if helper.parked.load(SeqCst) {
        helper.thread.unpark();
    }
    struct WaitForHelper(&'static Helper);
    impl Drop for WaitForHelper {
        fn drop(&mut self) {
            while self.0.state.load(SeqCst) != DONE {
                std::hint::spin_loop();
            }
            self.0.state.store(IDLE, SeqCst);
        }
    }
    {
        let _wait = WaitForHelper(helper);
        a();
    }
    assert!(
        !helper.failed.load(SeqCst),
        "the decode helper's job panicked"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_halves_run_every_time_and_borrows_come_back() {
        for i in 0..2000u64 {
            let (mut a, mut b) = (0, 0);
            join(|| a = i, || b = i + 1);
            assert_eq!((a, b), (i, i + 1));
            if i % 500 == 0 {
                std::thread::sleep(SPIN * 2); // the helper parks; the next job must wake it
            }
        }
    }

    #[test]
    fn a_panicking_job_is_reported_to_the_caller() {
        let caught = std::panic::catch_unwind(|| join(|| {}, || panic!("boom")));
        assert!(caught.is_err());
        let (mut a, mut b) = (0, 0);
        join(|| a = 1, || b = 2); // the helper still serves
        assert_eq!((a, b), (1, 2));
    }
}
