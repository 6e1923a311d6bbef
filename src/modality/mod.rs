//! Modality adapters and decoders: the only modality-aware code. One folder per modality holds
//! its codec, adapter, decoder and data loading.

pub mod audio;
pub mod continuous;
pub mod flow;
pub mod frechet;
pub mod image;
pub mod judge;
pub mod multi;
pub mod text;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The kinds of content aigc models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Text through a tokenizer (character-level or byte-level BPE).
    Text,
    /// Images as patches.
    Image,
    /// Audio as log-magnitude spectrogram frames.
    Audio,
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Modality::Text => "text",
            Modality::Image => "image",
            Modality::Audio => "audio",
        })
    }
}

/// Which part of a labelled dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training examples (MNIST `train-*` files, FSDD takes 5-49, 9 of every 10 files of a
    /// folder).
    Train,
    /// Held-out examples (MNIST `t10k-*` files, FSDD takes 0-4, every 10th file of a folder).
    Test,
}

/// The entries of `dir` that pass `keep`, sorted by path.
pub(crate) fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("reading folder", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| keep(p))
        .collect();
    entries.sort();
    Ok(entries)
}
