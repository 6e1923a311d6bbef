//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Runs the `aigc` binary with `args` from the repository root and returns its output.
pub fn aigc(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aigc"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the aigc binary runs")
}

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first `n` characters of tiny-shakespeare, written to `dir/corpus.txt`.
pub fn small_corpus(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(root().join("datasets/tinyshakespeare/input.txt")).unwrap();
    let path = dir.join("corpus.txt");
    std::fs::write(&path, &text[..n]).unwrap();
    path
}

/// A tiny text model trained for a few steps in `dir/tiny-model`; returns its directory.
pub fn tiny_text_model(dir: &Path) -> PathBuf {
    let data = small_corpus(dir, 20_000);
    let out = dir.join("tiny-model");
    let recipe = aigc::train::TextRecipe::tiny();
    aigc::train::pretrain_text(&data, &out, aigc::train::Start::Fresh(&recipe), |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    out
}

/// Logits of the text model in `dir` for one sequence of token ids.
pub fn logits_of(dir: &Path, ids: &[i64]) -> Vec<f32> {
    use burn::prelude::*;
    let device = aigc::default_device();
    let (model, _, _) = aigc::checkpoint::load_text(dir, &device).unwrap();
    let x = Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), &device);
    model.forward(x).into_data().try_into_vec().unwrap()
}

/// `(step, loss)` of every line of the run's `metrics.jsonl`.
pub fn losses(dir: &Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let m: serde_json::Value = serde_json::from_str(l).unwrap();
            (m["step"].as_u64().unwrap(), m["loss"].as_f64().unwrap())
        })
        .collect()
}

/// 8x8 grayscale images in 4x4 patches.
pub const TINY_IMAGE_SHAPE: aigc::modality::image::ImageShape = aigc::modality::image::ImageShape {
    channels: 1,
    height: 8,
    width: 8,
    patch_size: 4,
};

/// Class 0: a bright top half; class 1: a bright left half; class 2: a bright centre square.
pub fn tiny_image_pattern(class: usize) -> Vec<f32> {
    (0..64)
        .map(|i| {
            let (y, x) = (i / 8, i % 8);
            let on = match class {
                0 => y < 4,
                1 => x < 4,
                _ => (2..6).contains(&y) && (2..6).contains(&x),
            };
            if on {
                1.0
            } else {
                -1.0
            }
        })
        .collect()
}

/// Writes `root/<class>/<i>.png`, 10 copies of each class pattern.
pub fn write_tiny_image_dataset(root: &Path) {
    for class in 0..3 {
        let dir = root.join(format!("{class}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..10 {
            aigc::modality::image::write_png(
                &dir.join(format!("{i}.png")),
                &tiny_image_pattern(class),
                &TINY_IMAGE_SHAPE,
            )
            .unwrap();
        }
    }
}

/// The pitch of each class, in Hz.
pub const TINY_AUDIO_PITCHES: [f32; 3] = [400.0, 1200.0, 2400.0];

/// Writes `root/<class>_synth_<take>.wav`: 12 takes of each class's tone, of varying length
/// and loudness (takes 0-4 are the test split).
pub fn write_tiny_audio_dataset(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    for (class, hz) in TINY_AUDIO_PITCHES.iter().enumerate() {
        for take in 0..12 {
            let len = 200 + 25 * take;
            let amplitude = 0.2 + 0.05 * take as f32;
            let clip: Vec<f32> = (0..len)
                .map(|i| amplitude * (std::f32::consts::TAU * hz * i as f32 / 8000.0).sin())
                .collect();
            aigc::modality::audio::write_wav(
                &root.join(format!("{class}_synth_{take}.wav")),
                &clip,
                8000,
            )
            .unwrap();
        }
    }
}
