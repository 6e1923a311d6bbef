//! Reproducible randomness. burn draws parameters, dropout masks and noise from one
//! process-wide RNG per device; aigc seeds it and draws from it only under [`lock_device_rng`],
//! so concurrent runs in one process (tests, a server) stay reproducible.

use std::sync::{Mutex, MutexGuard};

/// Holds the device RNG for a seed-then-draw sequence.
pub fn lock_device_rng() -> MutexGuard<'static, ()> {
    static DEVICE_RNG: Mutex<()> = Mutex::new(());
    DEVICE_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
