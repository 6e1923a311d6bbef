//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

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
