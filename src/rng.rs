//! Reproducible randomness. burn draws parameters from one process-wide RNG per backend;
//! aigc seeds it, and on the CPU draws its own random tensors (dropout masks, noise) from a
//! twin of that RNG kept here, seeded alongside it: the same ChaCha12 stream from the same
//! seed, drawn through the same samplers, so the values are the ones the backend would give.
//! The twin advances on its own (burn's parameter draws do not move it), and it is fast: a
//! Bernoulli mask is filled in parallel chunks, each jumping to its place in the stream (one
//! 64-bit word per element), where the backend fills it one element at a time on one thread.
//! Dropout masks took about a quarter of a training step of the shipped text recipe that way.
//!
//! Seed with [`seed`] and draw with [`random`] under [`lock_device_rng`], so concurrent runs
//! in one process (tests, a server) stay reproducible.

use std::sync::{Mutex, MutexGuard};

use burn::prelude::*;
use burn::tensor::{Distribution, Shape};
use chacha20::rand_core::{Rng, SeedableRng};
use chacha20::ChaCha12Rng;
use rayon::prelude::*;

/// Holds the device RNG for a seed-then-draw sequence.
pub fn lock_device_rng() -> MutexGuard<'static, ()> {
    static DEVICE_RNG: Mutex<()> = Mutex::new(());
    DEVICE_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The CPU backend's RNG as aigc last seeded it (rand 0.10's `StdRng` is ChaCha12, and both
/// expand a `u64` seed the same way); `None` before the first [`seed`].
static CPU_RNG: Mutex<Option<ChaCha12Rng>> = Mutex::new(None);

/// Seeds `device`'s backend RNG, and on the CPU this module's twin of it.
pub fn seed(device: &Device, seed: u64) {
    device.seed(seed);
    if crate::device::is_cpu(device) {
        *cpu_rng() = Some(ChaCha12Rng::seed_from_u64(seed));
    }
}

fn cpu_rng() -> MutexGuard<'static, Option<ChaCha12Rng>> {
    CPU_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A tensor of draws from `distribution` on `device`, as `Tensor::random` draws it. On the CPU
/// after a [`seed`], the values come from this module's copy of the backend's RNG.
pub fn random<const D: usize>(
    shape: impl Into<Shape>,
    distribution: Distribution,
    device: &Device,
) -> Tensor<D> {
    let shape = shape.into();
    match draw_on_cpu(&shape, distribution, device) {
        Some(values) => Tensor::from_data(TensorData::new(values, shape), device),
        None => Tensor::random(shape, distribution, device),
    }
}

/// [`random`] with `x`'s shape and device.
pub fn random_like<const D: usize>(x: &Tensor<D>, distribution: Distribution) -> Tensor<D> {
    random(x.shape(), distribution, &x.device())
}

/// `n` draws from `Bernoulli(keep)` as 0/1 values: a dropout mask.
pub(crate) fn mask(n: usize, keep: f64, device: &Device) -> Vec<f32> {
    let shape = Shape::new([n]);
    let distribution = Distribution::Bernoulli(keep);
    draw_on_cpu(&shape, distribution, device).unwrap_or_else(|| {
        let mask = Tensor::<1>::random(shape, distribution, device);
        let data = mask.into_data().convert::<f32>();
        data.try_into_vec().expect("f32 after conversion")
    })
}

/// The values the CPU backend would draw, from this module's copy of its RNG; `None` on
/// another backend or before the first [`seed`].
fn draw_on_cpu(shape: &Shape, distribution: Distribution, device: &Device) -> Option<Vec<f32>> {
    if !crate::device::is_cpu(device) {
        return None;
    }
    let mut guard = cpu_rng();
    let rng = guard.as_mut()?;
    let n = shape.num_elements();
    Some(match distribution {
        Distribution::Bernoulli(p) => bernoulli(n, p, rng),
        _ => {
            let data = TensorData::random::<f32, _, _>(shape.clone(), distribution, rng);
            data.try_into_vec().expect("f32 draws")
        }
    })
}

/// Elements per parallel task of [`bernoulli`].
const MASK_CHUNK: usize = 1 << 15;

/// `n` draws from `Bernoulli(p)` as 0/1, as rand 0.10's `Bernoulli` draws them one by one:
/// `p = 1` draws nothing; otherwise each draw takes the stream's next 64-bit word (two 32-bit
/// words) and is 1 below `p · 2⁶⁴`. Each task jumps to its first word; `rng` ends after the
/// last. (The tasks must not call into this module: the caller holds its lock.)
fn bernoulli(n: usize, p: f64, rng: &mut ChaCha12Rng) -> Vec<f32> {
    assert!(
        (0.0..=1.0).contains(&p),
        "Bernoulli probability {p} outside [0, 1]"
    );
    if p == 1.0 {
        return vec![1.0; n];
    }
    let threshold = (p * 2f64.powi(64)) as u64;
    let start = rng.get_word_pos();
    let state = rng.serialize_state();
    let mut out = vec![0.0f32; n];
    out.par_chunks_mut(MASK_CHUNK)
        .enumerate()
        .for_each(|(task, chunk)| {
            let mut rng = ChaCha12Rng::deserialize_state(&state);
            rng.set_word_pos(start + 2 * (task * MASK_CHUNK) as u128);
            for v in chunk {
                *v = if rng.next_u64() < threshold { 1.0 } else { 0.0 };
            }
        });
    rng.set_word_pos(start + 2 * n as u128);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` Bernoulli draws one by one, as the backend makes them.
    fn one_by_one(n: usize, p: f64, rng: &mut ChaCha12Rng) -> Vec<f32> {
        let data = TensorData::random::<f32, _, _>([n], Distribution::Bernoulli(p), rng);
        data.try_into_vec().unwrap()
    }

    #[test]
    fn parallel_masks_equal_one_by_one_draws_from_any_starting_word() {
        let n = 2 * MASK_CHUNK + 3; // three tasks, the last one short
        for (skip, p) in [(0, 0.9), (1, 0.9), (63, 0.5), (64, 0.1), (5, 0.0), (3, 1.0)] {
            // `skip` single 32-bit words first, so the draws start at odd and even words and
            // at the generator's buffer edge.
            let mut fast = ChaCha12Rng::seed_from_u64(9);
            let mut slow = ChaCha12Rng::seed_from_u64(9);
            for _ in 0..skip {
                fast.next_u32();
                slow.next_u32();
            }
            let case = format!("skip {skip}, p {p}");
            assert_eq!(
                bernoulli(n, p, &mut fast),
                one_by_one(n, p, &mut slow),
                "{case}"
            );
            assert_eq!(
                fast.next_u64(),
                slow.next_u64(),
                "{case}: where the stream ends"
            );
        }
    }
}
