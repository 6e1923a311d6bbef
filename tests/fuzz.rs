//! Bounded mutation fuzzing of every file parser: valid files with bytes overwritten,
//! flipped, cut short, and random byte strings. Each parser must answer with `Ok` or an
//! error, never a panic, a hang or a huge allocation. Seeded, so a failure reproduces.

mod common;

use std::io::Cursor;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use aigc::checkpoint;
use aigc::modality::audio::decode_wav;
use aigc::modality::image::parse_idx;
use aigc::modality::text::TextTokenizer;

/// `valid`, then `n` mutants of it: single bytes set to 0x00, 0xFF or random values,
/// bit flips, truncations, and random strings.
fn mutants(valid: &[u8], n: usize, seed: u64) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut rng = StdRng::seed_from_u64(seed);
    let len = valid.len();
    std::iter::once(valid.to_vec()).chain((0..n).map(move |i| {
        let mut bytes = valid.to_vec();
        match i % 5 {
            0 => bytes[rng.random_range(0..len)] = 0,
            1 => bytes[rng.random_range(0..len)] = 0xff,
            2 => {
                for _ in 0..rng.random_range(1..8) {
                    bytes[rng.random_range(0..len)] = rng.random();
                }
            }
            3 => bytes.truncate(rng.random_range(0..len)),
            _ => bytes = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
        }
        bytes
    }))
}

#[test]
fn idx_parser() {
    let mut valid = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3];
    valid.extend(0..18u8);
    assert!(parse_idx(&valid).is_ok());
    for bytes in mutants(&valid, 3000, 1) {
        let _ = parse_idx(&bytes);
    }
    // Header-only mutants that claim huge dimensions must not allocate them.
    let huge = [
        0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2,
    ];
    assert!(parse_idx(&huge).is_err());
}

fn wav_bytes(spec: hound::WavSpec) -> Vec<u8> {
    let mut cursor = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for i in 0..400 {
        let v = ((i as f32 * 0.07).sin() * 12_000.0) as i32;
        for _ in 0..spec.channels {
            match spec.sample_format {
                hound::SampleFormat::Float => writer.write_sample(v as f32 / 32768.0).unwrap(),
                hound::SampleFormat::Int => writer.write_sample(v).unwrap(),
            }
        }
    }
    writer.finalize().unwrap();
    cursor.into_inner()
}

#[test]
fn wav_decoder() {
    let int16 = hound::WavSpec {
        channels: 2,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let float = hound::WavSpec {
        channels: 1,
        sample_rate: 8_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    for (seed, spec) in [(2, int16), (3, float)] {
        let valid = wav_bytes(spec);
        assert!(decode_wav(Cursor::new(&valid), 8000).is_ok());
        for bytes in mutants(&valid, 2000, seed) {
            let _ = decode_wav(Cursor::new(bytes), 8000);
        }
    }
}

/// Mutants of one file of a tiny trained checkpoint, loaded through `load`; the
/// checksums are removed so the contents themselves are parsed.
fn fuzz_checkpoint_file(file: &str, n: usize, seed: u64, load: impl Fn(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_text_model(dir.path());
    std::fs::remove_file(model.join(checkpoint::CHECKSUM_FILE)).unwrap();
    let valid = std::fs::read(model.join(file)).unwrap();
    for bytes in mutants(&valid, n, seed) {
        std::fs::write(model.join(file), &bytes).unwrap();
        load(&model);
    }
}

#[test]
fn checkpoint_config() {
    fuzz_checkpoint_file(checkpoint::CONFIG_FILE, 1500, 4, |dir| {
        let _ = checkpoint::load_config(dir);
    });
}

#[test]
fn checkpoint_weights() {
    let device = aigc::default_device();
    fuzz_checkpoint_file(checkpoint::WEIGHTS_FILE, 400, 5, |dir| {
        let _ = checkpoint::load_text(dir, &device);
    });
}

#[test]
fn tokenizer_file() {
    fuzz_checkpoint_file(checkpoint::TOKENIZER_FILE, 600, 6, |dir| {
        let _ = TextTokenizer::load(&dir.join(checkpoint::TOKENIZER_FILE));
    });
}
