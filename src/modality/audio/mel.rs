//! Log-mel spectrogram pictures: what the audio judge sees. Independent of the model's own
//! codec statistics, so real, round-tripped and generated clips are judged alike.
//!
//! A clip (at the model's rate, peak-normalised) is cut or padded with silence to the frames of
//! the model's longest clip, its power spectrum pooled by triangular filters on the HTK mel
//! scale (32 bands for FSDD), log-compressed, and standardised per picture (loudness does not
//! matter).

use super::codec::{peak_normalize, AudioFormat};
use super::stft::magnitudes;
use crate::modality::image::ImageShape;

/// The picture geometry of log-mel spectrograms of `format`'s clips: up to 32 mel bands (at
/// most a quarter of the STFT bins) high, as many frames as the longest clip wide, both
/// rounded up to a multiple of 4 for the judge's two poolings.
pub fn mel_shape(format: &AudioFormat) -> ImageShape {
    let round4 = |n: usize| n.div_ceil(4) * 4;
    ImageShape {
        channels: 1,
        height: round4((format.n_bins() / 4).clamp(1, 32)),
        width: round4(format.stft().n_frames(format.max_samples())),
        patch_size: 4,
    }
}

fn hz_to_mel(hz: f32) -> f32 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

fn mel_to_hz(mel: f32) -> f32 {
    700.0 * (10f32.powf(mel / 2595.0) - 1.0)
}

/// `n_mels` triangular filters, `[n_mels, n_bins]` row-major, spanning 0 Hz to Nyquist.
fn filterbank(format: &AudioFormat, n_mels: usize) -> Vec<f32> {
    let n_bins = format.n_bins();
    let nyquist = format.sample_rate as f32 / 2.0;
    let top = hz_to_mel(nyquist);
    let edges: Vec<f32> = (0..n_mels + 2)
        .map(|i| mel_to_hz(top * i as f32 / (n_mels + 1) as f32))
        .collect();
    let mut bank = vec![0.0f32; n_mels * n_bins];
    for m in 0..n_mels {
        let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
        for b in 0..n_bins {
            let hz = b as f32 * nyquist / (n_bins - 1) as f32;
            let w = if hz < lo || hz > hi {
                0.0
            } else if hz <= mid {
                (hz - lo) / (mid - lo)
            } else {
                (hi - hz) / (hi - mid)
            };
            bank[m * n_bins + b] = w;
        }
    }
    bank
}

/// The log-mel picture of `clip`, `[1, height, width]` of [`mel_shape`] (band-major, time
/// along rows).
pub fn log_mel_picture(format: &AudioFormat, clip: &[f32]) -> Vec<f32> {
    let shape = mel_shape(format);
    let (n_mels, n_frames, n_bins) = (shape.height, shape.width, format.n_bins());
    let max_len = (n_frames - 1) * format.hop_len;
    let clip = peak_normalize(&clip[..clip.len().min(max_len)]);
    let mags = magnitudes(&format.stft().forward(&clip));
    let bank = filterbank(format, n_mels);
    let mut picture = vec![0.0f32; n_mels * n_frames];
    for t in 0..n_frames {
        let frame = mags.get(t * n_bins..(t + 1) * n_bins);
        for m in 0..n_mels {
            let energy: f32 = frame.map_or(0.0, |f| {
                f.iter()
                    .zip(&bank[m * n_bins..(m + 1) * n_bins])
                    .map(|(a, w)| a * a * w)
                    .sum()
            });
            picture[m * n_frames + t] = (energy + 1e-6).ln();
        }
    }
    let n = picture.len() as f32;
    let mean = picture.iter().sum::<f32>() / n;
    let std = (picture.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n)
        .sqrt()
        .max(1e-6);
    picture.iter().map(|v| (v - mean) / std).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_lights_up_the_band_of_its_pitch() {
        let format = AudioFormat::fsdd();
        let shape = mel_shape(&format);
        assert_eq!((shape.height, shape.width), (32, 128));
        let band_of = |hz: f32| {
            let clip: Vec<f32> = (0..4000)
                .map(|i| (std::f32::consts::TAU * hz * i as f32 / 8000.0).sin())
                .collect();
            let picture = log_mel_picture(&format, &clip);
            assert_eq!(picture.len(), 32 * 128);
            // Loudest band in a frame in the middle of the clip.
            let level = |band: usize| picture[band * 128 + 30];
            (0..32)
                .max_by(|&a, &b| level(a).total_cmp(&level(b)))
                .unwrap()
        };
        let (low, high) = (band_of(300.0), band_of(2500.0));
        assert!(low < high, "{low} vs {high}");
        assert!(high > 16);
    }
}
