//! Modality adapters and decoders: the only modality-aware code. One folder per modality holds
//! its codec, adapter, decoder and data loading.

pub mod flow;
pub mod frechet;
pub mod image;
pub mod text;

use serde::{Deserialize, Serialize};

/// The kinds of content aigc models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Text through a tokenizer (character-level or byte-level BPE).
    Text,
    /// Images as patches.
    Image,
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Modality::Text => "text",
            Modality::Image => "image",
        })
    }
}
