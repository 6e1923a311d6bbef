//! # aigc: multimodal generative AI on one Transformer core
//!
//! Content flows through one pipeline for every modality:
//!
//! ```text
//! content ──codec──▶ units ──adapter──▶ [B,T,D] ──core──▶ [B,T,D] ──decoder──▶ units ──codec──▶ content
//! ```
//!
//! - [`core`]: the modality-agnostic decoder-only Transformer with its KV cache.
//! - [`modality`]: one folder per modality (codec, adapter, decoder, data).
//! - [`train`]: the one training loop (AdamW, warmup + cosine, clipping, eval, resume).
//! - [`checkpoint`]: the one checkpoint format (a directory with safetensors weights).
//! - [`sample`]: the one sampling module (temperature, top-k/p, min-p, repetition penalty).
//! - [`Pipeline`]: load any checkpoint and generate text, images or audio from it.
//!
//! ## Shape legend (used in every `# Shapes` section)
//!
//! | symbol | meaning |
//! |---|---|
//! | `B` | batch size |
//! | `T` | sequence length (positions in this call) |
//! | `S` | cached positions (KV cache length) |
//! | `D` | `d_model`, the width of the residual stream |
//! | `H` | `n_heads` |
//! | `hd` | `head_dim` = `d_model / n_heads` |
//! | `F` | `d_ff`, the MLP hidden width |
//! | `V` | `vocab_size` |

#![warn(missing_docs)]

pub mod card;
pub mod checkpoint;
pub mod core;
pub mod device;
pub mod error;
pub mod modality;
pub mod pipeline;
pub mod rng;
pub mod sample;
pub mod train;

pub use device::{default_device, parse_device, parse_devices, set_default_device, set_devices};
pub use error::{Error, Result};
pub use pipeline::{Clip, Pipeline};
