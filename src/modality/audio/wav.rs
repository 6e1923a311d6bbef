//! WAV files in and out, with `hound`. Reading accepts any PCM (8/16/24/32-bit) or 32-bit
//! float file, mixes the channels down to mono and resamples to the model's rate (`rubato`'s
//! FFT resampler); writing produces 16-bit PCM mono.

use std::io::Read;
use std::path::Path;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::{Error, Result};

/// Longest clip read, in seconds: longer files are refused instead of filling memory.
pub const MAX_WAV_SECONDS: f64 = 600.0;

/// Reads the WAV file at `path` as mono samples in `[-1, 1]` at `sample_rate` Hz.
pub fn read_wav(path: &Path, sample_rate: u32) -> Result<Vec<f32>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    decode_wav(std::io::BufReader::new(file), sample_rate).map_err(|message| Error::Data {
        path: path.to_path_buf(),
        message,
    })
}

/// Decodes a WAV stream as [`read_wav`] does; the error says what is wrong with it.
pub fn decode_wav(reader: impl Read, sample_rate: u32) -> Result<Vec<f32>, String> {
    let wav = hound::WavReader::new(reader).map_err(|e| format!("not a readable WAV file: {e}"))?;
    let spec = wav.spec();
    let channels = spec.channels as usize;
    let frames = wav.duration() as usize;
    if channels == 0 || spec.sample_rate == 0 {
        return Err("the WAV header has no channels or a zero sample rate".into());
    }
    if frames == 0 {
        return Err("the clip is empty (zero samples)".into());
    }
    let seconds = frames as f64 / spec.sample_rate as f64;
    if seconds > MAX_WAV_SECONDS {
        return Err(format!(
            "the clip lasts {seconds:.0} s; clips longer than {MAX_WAV_SECONDS} s are refused"
        ));
    }
    let interleaved = read_samples(wav, spec)?;
    let mono: Vec<f32> = interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    if mono.len() < frames {
        return Err(format!(
            "truncated: the header promises {frames} frames, the file holds {}",
            mono.len()
        ));
    }
    resample(&mono, spec.sample_rate, sample_rate)
}

/// All samples, interleaved, scaled to `[-1, 1]`.
fn read_samples<R: Read>(
    wav: hound::WavReader<R>,
    spec: hound::WavSpec,
) -> Result<Vec<f32>, String> {
    let truncated = |e: hound::Error| format!("cannot read the samples (truncated file?): {e}");
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            wav.into_samples::<f32>().map(|s| s.map_err(truncated)).collect()
        }
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            wav.into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale).map_err(truncated))
                .collect()
        }
        (format, bits) => Err(format!(
            "unsupported encoding: {bits}-bit {format:?} (supported: 8/16/24/32-bit PCM, 32-bit float)"
        )),
    }
}

/// `samples` at `from` Hz resampled to `to` Hz.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    if from == to {
        return Ok(samples.to_vec());
    }
    let fail = |e: &dyn std::fmt::Display| format!("resampling {from} Hz -> {to} Hz: {e}");
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| fail(&e))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| fail(&e))?;
    let output = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| fail(&e))?;
    Ok(output.take_data())
}

/// Writes mono `samples` (clamped to `[-1, 1]`) as a 16-bit PCM WAV file at `sample_rate` Hz.
pub fn write_wav(path: &Path, samples: &[f32], sample_rate: u32) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let io = |e: hound::Error| match e {
        hound::Error::IoError(e) => Error::io("writing", path, e),
        other => Error::Data {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(io)?;
    for &s in samples {
        let v = (s.clamp(-1.0, 1.0) * i16::MAX as f32).round() as i16;
        writer.write_sample(v).map_err(io)?;
    }
    writer.finalize().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, rate: u32) -> Vec<f32> {
        (0..n)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin())
            .collect()
    }

    fn encode(spec: hound::WavSpec, frames: &[f32]) -> Vec<u8> {
        let mut bytes = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut bytes, spec).unwrap();
        for &s in frames {
            for _ in 0..spec.channels {
                match spec.sample_format {
                    hound::SampleFormat::Float => w.write_sample(s).unwrap(),
                    hound::SampleFormat::Int => {
                        let max = ((1i64 << (spec.bits_per_sample - 1)) - 1) as f32;
                        let v = (s * max).round() as i32;
                        match spec.bits_per_sample {
                            8 => w.write_sample(v as i8).unwrap(),
                            16 => w.write_sample(v as i16).unwrap(),
                            _ => w.write_sample(v).unwrap(),
                        }
                    }
                }
            }
        }
        w.finalize().unwrap();
        bytes.into_inner()
    }

    #[test]
    fn reads_every_supported_encoding_and_channel_count() {
        let signal = tone(800, 8000);
        for (bits, format) in [
            (8, hound::SampleFormat::Int),
            (16, hound::SampleFormat::Int),
            (24, hound::SampleFormat::Int),
            (32, hound::SampleFormat::Int),
            (32, hound::SampleFormat::Float),
        ] {
            for channels in [1, 2] {
                let spec = hound::WavSpec {
                    channels,
                    sample_rate: 8000,
                    bits_per_sample: bits,
                    sample_format: format,
                };
                let read = decode_wav(&encode(spec, &signal)[..], 8000).unwrap();
                assert_eq!(read.len(), signal.len());
                let tolerance = if bits == 8 { 1e-2 } else { 1e-4 };
                let err = read.iter().zip(&signal).map(|(a, b)| (a - b).abs());
                assert!(
                    err.fold(0.0, f32::max) < tolerance,
                    "{bits}-bit {format:?} x{channels}"
                );
            }
        }
    }

    #[test]
    fn resamples_other_rates_to_the_model_rate() {
        for rate in [16_000u32, 22_050, 44_100] {
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let read = decode_wav(&encode(spec, &tone(rate as usize / 2, rate))[..], 8000).unwrap();
            assert!(
                (read.len() as i64 - 4000).abs() <= 2,
                "{rate}: {}",
                read.len()
            );
            // Still a 440 Hz tone of amplitude 0.5 away from the edges.
            let peak = read[500..3500].iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!((peak - 0.5).abs() < 0.02, "{rate}: peak {peak}");
        }
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let good = encode(spec, &tone(800, 8000));
        let cases: [(&[u8], &str); 4] = [
            (b"not a wav file at all", "not a readable WAV"),
            (&good[..good.len() - 100], "truncated"),
            (&encode(spec, &[]), "empty"),
            (&good[..20], "not a readable WAV"),
        ];
        for (bytes, expected) in cases {
            let err = decode_wav(bytes, 8000).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }

    /// A WAV file with a `fmt ` chunk of `format_tag` and `bits`, and 8 bytes of data.
    fn raw_wav(format_tag: u16, bits: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(4u32 + 24 + 16).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&format_tag.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes()); // channels
        b.extend_from_slice(&8000u32.to_le_bytes());
        b.extend_from_slice(&(8000 * bits as u32 / 8).to_le_bytes());
        b.extend_from_slice(&(bits / 8).to_le_bytes());
        b.extend_from_slice(&bits.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        b
    }

    #[test]
    fn a_header_claiming_hours_is_refused_before_reading() {
        let mut wav = raw_wav(1, 16);
        let data_len = wav.len() - 12;
        wav[data_len..data_len + 4].copy_from_slice(&(u32::MAX - 1).to_le_bytes()); // 74 hours
        let err = decode_wav(&wav[..], 8000).unwrap_err();
        assert!(err.contains("clips longer than 600 s are refused"), "{err}");
    }

    #[test]
    fn unsupported_encodings_are_named() {
        assert_eq!(decode_wav(&raw_wav(1, 16)[..], 8000).unwrap(), vec![0.0; 4]);
        for (tag, bits) in [(3, 64), (6, 8), (7, 8), (2, 4)] {
            let err = decode_wav(&raw_wav(tag, bits)[..], 8000).unwrap_err();
            assert!(
                err.contains("unsupported")
                    || err.contains("Unsupported")
                    || err.contains("not a readable WAV"),
                "format {tag}, {bits} bits: {err}"
            );
        }
    }

    #[test]
    fn write_then_read_round_trips_at_16_bits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let signal = tone(1000, 8000);
        write_wav(&path, &signal, 8000).unwrap();
        let read = read_wav(&path, 8000).unwrap();
        let err = read.iter().zip(&signal).map(|(a, b)| (a - b).abs());
        assert!(err.fold(0.0, f32::max) < 1e-4);
        assert!(read_wav(&dir.path().join("missing.wav"), 8000).is_err());
    }
}
