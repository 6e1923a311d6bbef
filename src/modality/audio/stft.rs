//! The short-time Fourier transform, its inverse, and fast Griffin-Lim phase recovery
//! (Perraudin, Balazs & Søndergaard 2013, "A fast Griffin-Lim algorithm"; the momentum
//! update follows librosa's `griffinlim`). FFTs come from `realfft`.
//!
//! Frames are centred: the signal is zero-padded by `n_fft / 2` on both sides, so a clip of
//! `n` samples has `n / hop_len + 1` frames and frame `f` is centred on sample `f * hop_len`.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// A spectrogram: `n_frames` rows of `n_bins` complex values, row-major.
pub type Spectrum = Vec<Complex32>;

/// A planned STFT of one frame size and hop.
#[derive(Clone)]
pub struct Stft {
    n_fft: usize,
    hop_len: usize,
    /// Periodic Hann window.
    window: Vec<f32>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stft(n_fft={}, hop_len={})", self.n_fft, self.hop_len)
    }
}

impl Stft {
    /// Plans transforms of `n_fft` samples every `hop_len` samples (`hop_len <= n_fft / 2`
    /// keeps the Hann windows overlapping enough to invert).
    pub fn new(n_fft: usize, hop_len: usize) -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        let window = (0..n_fft)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / n_fft as f32).cos())
            .collect();
        Self {
            n_fft,
            hop_len,
            window,
            forward: planner.plan_fft_forward(n_fft),
            inverse: planner.plan_fft_inverse(n_fft),
        }
    }

    /// Frequency bins per frame: `n_fft / 2 + 1`.
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Frames of a clip of `n_samples` samples.
    pub fn n_frames(&self, n_samples: usize) -> usize {
        n_samples / self.hop_len + 1
    }

    /// The spectrogram of `signal` (`[n_frames, n_bins]`).
    pub fn forward(&self, signal: &[f32]) -> Spectrum {
        let (half, n_bins) = (self.n_fft / 2, self.n_bins());
        let n_frames = self.n_frames(signal.len());
        let mut frame = vec![0.0f32; self.n_fft];
        let mut out = vec![Complex32::default(); n_frames * n_bins];
        for (f, bins) in out.chunks_exact_mut(n_bins).enumerate() {
            let start = (f * self.hop_len) as isize - half as isize;
            for (i, v) in frame.iter_mut().enumerate() {
                let t = start + i as isize;
                let s = if t >= 0 { signal.get(t as usize) } else { None };
                *v = s.copied().unwrap_or(0.0) * self.window[i];
            }
            self.forward
                .process(&mut frame, bins)
                .expect("buffer sizes come from the plan");
        }
        out
    }

    /// The signal of `len` samples whose spectrogram is closest to `spectrum` (windowed
    /// overlap-add divided by the summed squared window). Exact for a true spectrogram.
    pub fn inverse(&self, spectrum: &[Complex32], len: usize) -> Vec<f32> {
        let (half, n_bins) = (self.n_fft / 2, self.n_bins());
        let padded = len + self.n_fft;
        let (mut sum, mut norm) = (vec![0.0f32; padded], vec![0.0f32; padded]);
        let mut bins = vec![Complex32::default(); n_bins];
        let mut frame = vec![0.0f32; self.n_fft];
        for (f, spec) in spectrum.chunks_exact(n_bins).enumerate() {
            bins.copy_from_slice(spec);
            // A real signal's DC and Nyquist bins are real; realfft insists.
            bins[0].im = 0.0;
            bins[n_bins - 1].im = 0.0;
            self.inverse
                .process(&mut bins, &mut frame)
                .expect("buffer sizes come from the plan");
            let start = f * self.hop_len;
            for i in 0..self.n_fft.min(padded.saturating_sub(start)) {
                let w = self.window[i];
                sum[start + i] += frame[i] * w / self.n_fft as f32;
                norm[start + i] += w * w;
            }
        }
        (0..len)
            .map(|t| {
                let n = norm[t + half];
                if n > 1e-6 {
                    sum[t + half] / n
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// A signal of `len` samples whose STFT magnitudes approach `magnitudes` (`[n_frames,
    /// n_bins]`), by `iters` rounds of fast Griffin-Lim with `momentum` from seeded random
    /// phases.
    pub fn griffin_lim(
        &self,
        magnitudes: &[f32],
        len: usize,
        iters: usize,
        momentum: f32,
    ) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(0);
        let mut angles: Spectrum = magnitudes
            .iter()
            .map(|_| Complex32::from_polar(1.0, rng.random::<f32>() * std::f32::consts::TAU))
            .collect();
        let mut previous: Spectrum = vec![Complex32::default(); magnitudes.len()];
        let with_magnitudes = |angles: &Spectrum| -> Spectrum {
            angles.iter().zip(magnitudes).map(|(a, &m)| a * m).collect()
        };
        let ratio = momentum / (1.0 + momentum);
        for _ in 0..iters {
            let rebuilt = self.forward(&self.inverse(&with_magnitudes(&angles), len));
            for ((a, r), p) in angles.iter_mut().zip(&rebuilt).zip(&previous) {
                let v = r - p * ratio;
                *a = v / (v.norm() + 1e-8);
            }
            previous = rebuilt;
        }
        self.inverse(&with_magnitudes(&angles), len)
    }
}

/// Magnitudes of a spectrogram.
pub fn magnitudes(spectrum: &[Complex32]) -> Vec<f32> {
    spectrum.iter().map(|c| c.norm()).collect()
}

/// Spectral convergence of `signal` against target `magnitudes`:
/// `‖|STFT(signal)| - magnitudes‖ / ‖magnitudes‖` (0 is perfect).
pub fn spectral_convergence(stft: &Stft, signal: &[f32], magnitudes: &[f32]) -> f32 {
    let rebuilt = stft.forward(signal);
    let (mut diff, mut total) = (0.0f32, 0.0f32);
    for (c, &m) in rebuilt.iter().zip(magnitudes) {
        diff += (c.norm() - m).powi(2);
        total += m * m;
    }
    (diff / total.max(1e-12)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chirp with a second harmonic and a little noise: something speech-like to invert.
    fn test_signal(n: usize) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(1);
        (0..n)
            .map(|i| {
                let t = i as f32 / 8000.0;
                let phase = std::f32::consts::TAU * (150.0 * t + 200.0 * t * t);
                0.5 * phase.sin() + 0.2 * (2.0 * phase).sin() + 0.01 * (rng.random::<f32>() - 0.5)
            })
            .collect()
    }

    #[test]
    fn inverse_of_forward_is_the_identity() {
        let stft = Stft::new(256, 64);
        for len in [64 * 50, 3001, 100] {
            let x = test_signal(len);
            let spectrum = stft.forward(&x);
            assert_eq!(spectrum.len(), stft.n_frames(len) * 129);
            let y = stft.inverse(&spectrum, len);
            let err = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-4, "len {len}: max error {err}");
        }
    }

    #[test]
    fn griffin_lim_recovers_a_consistent_phase() {
        let stft = Stft::new(256, 64);
        let x = test_signal(4000);
        let target = magnitudes(&stft.forward(&x));
        let random_phase =
            spectral_convergence(&stft, &stft.griffin_lim(&target, 4000, 0, 0.99), &target);
        let recovered =
            spectral_convergence(&stft, &stft.griffin_lim(&target, 4000, 64, 0.99), &target);
        assert!(recovered < 0.1, "spectral convergence {recovered}");
        assert!(
            recovered < random_phase / 3.0,
            "{recovered} vs {random_phase} before"
        );
    }
}
