//! The audio codec: waveform <-> units. A clip is peak-normalised and cut to the model's
//! longest length, turned into log-magnitude STFT frames `log(|X| + floor)`, standardised per
//! frequency bin with statistics of the training set, and grouped `frames_per_unit` frames to a
//! unit. Decoding undoes each step and recovers a phase with fast Griffin-Lim.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::stft::{magnitudes, Stft};
use crate::{Error, Result};

/// Sample rate, framing and limits of an audio model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioFormat {
    /// Samples per second (8000 for FSDD).
    pub sample_rate: u32,
    /// STFT frame length in samples (`frame_len`); `n_fft / 2 + 1` bins per frame.
    pub n_fft: usize,
    /// Samples between frames (`hop_len`).
    pub hop_len: usize,
    /// STFT frames per unit (one core position).
    pub frames_per_unit: usize,
    /// Longest clip in units; longer clips are cut.
    pub max_units: usize,
    /// Added to magnitudes before the log, so silence stays finite.
    pub floor: f32,
    /// Griffin-Lim iterations when decoding.
    pub griffin_lim_iters: usize,
}

impl AudioFormat {
    /// The FSDD format: 8 kHz, 256-sample frames every 64 samples, 2 frames a unit, at most
    /// 63 units (1 s).
    pub fn fsdd() -> Self {
        Self {
            sample_rate: 8000,
            n_fft: 256,
            hop_len: 64,
            frames_per_unit: 2,
            max_units: 63,
            floor: 0.01,
            griffin_lim_iters: 64,
        }
    }

    /// Checks the framing can be inverted.
    pub fn validate(&self) -> Result<()> {
        let f = self;
        if f.sample_rate == 0 || f.n_fft < 4 || f.hop_len == 0 || f.frames_per_unit == 0 {
            return Err(Error::Config(format!(
                "audio format sizes must be positive: {f:?}"
            )));
        }
        if f.hop_len > f.n_fft / 2 || f.max_units == 0 || f.floor.is_nan() || f.floor <= 0.0 {
            return Err(Error::Config(format!(
                "audio format needs hop_len <= n_fft / 2, max_units > 0 and floor > 0: {f:?}"
            )));
        }
        Ok(())
    }

    /// Bins per frame.
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Values per unit (`unit_dim`).
    pub fn unit_dim(&self) -> usize {
        self.n_bins() * self.frames_per_unit
    }

    /// Longest clip in samples: `max_units` units of frames.
    pub fn max_samples(&self) -> usize {
        (self.max_units * self.frames_per_unit - 1) * self.hop_len
    }

    /// Samples of a clip of `n_units` units.
    pub fn samples_of(&self, n_units: usize) -> usize {
        (n_units * self.frames_per_unit).saturating_sub(1) * self.hop_len
    }

    /// The planned STFT of this format.
    pub fn stft(&self) -> Stft {
        Stft::new(self.n_fft, self.hop_len)
    }
}

/// Per-bin mean and standard deviation of log magnitudes over a training set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinStats {
    /// Mean log magnitude of each bin.
    pub mean: Vec<f32>,
    /// Standard deviation of each bin's log magnitude.
    pub std: Vec<f32>,
}

impl BinStats {
    /// Statistics of the frames of `clips` (waveforms already prepared with [`prepare`]).
    pub fn fit(format: &AudioFormat, clips: &[Vec<f32>]) -> Self {
        let n_bins = format.n_bins();
        let logs: Vec<Vec<f32>> = clips.par_iter().map(|c| log_frames(format, c)).collect();
        let (mut sum, mut sq, mut n) = (vec![0.0f64; n_bins], vec![0.0f64; n_bins], 0usize);
        for frame in logs.iter().flat_map(|l| l.chunks_exact(n_bins)) {
            for (b, &v) in frame.iter().enumerate() {
                sum[b] += v as f64;
                sq[b] += (v as f64).powi(2);
            }
            n += 1;
        }
        let n = n.max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, &m)| ((q / n - (m as f64).powi(2)).max(1e-6)).sqrt() as f32)
            .collect();
        Self { mean, std }
    }
}

/// Scales `clip` to a peak of 0.95 (silence stays silence) and cuts it to the format's
/// longest length.
pub fn prepare(format: &AudioFormat, clip: &[f32]) -> Vec<f32> {
    peak_normalize(&clip[..clip.len().min(format.max_samples())])
}

/// `clip` scaled to a peak of 0.95; silence stays silence.
pub fn peak_normalize(clip: &[f32]) -> Vec<f32> {
    let peak = clip.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let gain = if peak > 1e-6 { 0.95 / peak } else { 1.0 };
    clip.iter().map(|v| v * gain).collect()
}

/// `log(|X| + floor)` frames of a prepared clip, whole units only (`[n_frames, n_bins]`).
fn log_frames(format: &AudioFormat, clip: &[f32]) -> Vec<f32> {
    let stft = format.stft();
    let frames = stft.n_frames(clip.len());
    let kept = (frames / format.frames_per_unit).max(1) * format.frames_per_unit;
    let mut mags = magnitudes(&stft.forward(clip));
    mags.resize(kept * format.n_bins(), 0.0);
    mags.iter().map(|m| (m + format.floor).ln()).collect()
}

/// The units of a prepared clip: `[n_units, unit_dim]` row-major, at least one unit.
pub fn encode(format: &AudioFormat, stats: &BinStats, clip: &[f32]) -> Vec<f32> {
    let n_bins = format.n_bins();
    let mut logs = log_frames(format, clip);
    for frame in logs.chunks_exact_mut(n_bins) {
        for (b, v) in frame.iter_mut().enumerate() {
            *v = (*v - stats.mean[b]) / stats.std[b];
        }
    }
    logs
}

/// STFT magnitudes (`[n_frames, n_bins]`) of units made by [`encode`] or a model.
pub fn unit_magnitudes(format: &AudioFormat, stats: &BinStats, units: &[f32]) -> Vec<f32> {
    let n_bins = format.n_bins();
    let mut mags = units.to_vec();
    for frame in mags.chunks_exact_mut(n_bins) {
        for (b, v) in frame.iter_mut().enumerate() {
            *v = ((*v * stats.std[b] + stats.mean[b]).exp() - format.floor).max(0.0);
        }
    }
    mags
}

/// Waveforms of several unit sequences, Griffin-Lim run in parallel, each scaled to a peak
/// of 0.95 like the training clips.
pub fn decode_all(format: &AudioFormat, stats: &BinStats, clips: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let stft = format.stft();
    clips
        .par_iter()
        .map(|units| {
            let mags = unit_magnitudes(format, stats, units);
            let len = format.samples_of(units.len() / format.unit_dim());
            peak_normalize(&stft.griffin_lim(&mags, len, format.griffin_lim_iters, 0.99))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_keeps_length_and_spectrum() {
        let format = AudioFormat::fsdd();
        let clip: Vec<f32> = (0..3000)
            .map(|i| (std::f32::consts::TAU * 300.0 * i as f32 / 8000.0).sin())
            .collect();
        let clip = prepare(&format, &clip);
        let stats = BinStats::fit(&format, std::slice::from_ref(&clip));
        let units = encode(&format, &stats, &clip);
        // 3000 samples -> 47 frames -> 23 units of 2 frames.
        assert_eq!(units.len(), 23 * format.unit_dim());
        let mags = unit_magnitudes(&format, &stats, &units);
        let original = magnitudes(&format.stft().forward(&clip));
        let err = mags.iter().zip(&original).map(|(a, b)| (a - b).abs());
        assert!(err.fold(0.0, f32::max) < 1e-3);
        let wave = &decode_all(&format, &stats, &[units])[0];
        assert_eq!(wave.len(), format.samples_of(23));
        let peak = wave.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!((peak - 0.95).abs() < 1e-4);
    }

    #[test]
    fn long_clips_are_cut_and_quiet_ones_amplified() {
        let format = AudioFormat::fsdd();
        let clip = vec![0.1f32; 20_000];
        let prepared = prepare(&format, &clip);
        assert_eq!(prepared.len(), 8000);
        assert!((prepared[0] - 0.95).abs() < 1e-6);
        assert_eq!(prepare(&format, &[0.0; 10]), vec![0.0; 10]);
        let units = encode(
            &format,
            &BinStats::fit(&format, std::slice::from_ref(&prepared)),
            &prepared,
        );
        assert_eq!(units.len() / format.unit_dim(), format.max_units);
    }
}
