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
