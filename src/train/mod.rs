//! The one training loop: AdamW (decoupled weight decay on matrices only), warmup + cosine
//! learning rate, global-norm clipping, periodic evaluation on the held-out split, JSONL
//! metrics, atomic checkpoints and exact resume. Each modality plugs in through [`Trainable`]
//! (its batches, loss and validation score) and a small front (`text.rs`) that builds or
//! loads its model and writes its checkpoints.
//!
//! Determinism: the batch of step `s` and its dropout masks are drawn from RNGs seeded by
//! `(seed, s)`, so a run resumed from a checkpoint takes exactly the steps an uninterrupted
//! run would have taken.

mod adamw;
mod audio;
mod bench;
mod classifier;
mod clip;
mod config;
mod ema;
mod eval;
mod image;
mod metrics;
mod multi;
mod polling;
mod recipes;
mod schedule;
mod session;
mod shards;
mod text;

pub use audio::{fit_onset_prior, pretrain_audio, AudioData};
pub use bench::{bench_training, median, TrainBench};
pub use classifier::pretrain_classifier;
pub use clip::clip_global_norm;
pub use config::TrainConfig;
pub use eval::{evaluate, evaluate_val_split, Score, TextScore};
pub use image::{pretrain_image, ImageData};
pub use metrics::{Metrics, MetricsLog};
pub use multi::{pretrain_multi, MultiData, MultiPaths, MultiRecipe};
pub use recipes::{classifier_recipe, AudioRecipe, ImageRecipe, Recipe, TextRecipe};
pub use schedule::lr_at;
pub use text::{pretrain_text, TextData};

pub(crate) use session::Session;

use burn::module::Module;
use burn::prelude::*;
use rand::rngs::StdRng;

use crate::checkpoint::{self, CheckpointConfig, ModelConfig};
use crate::Result;

/// One optimizer step's report, for progress bars.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Steps completed.
    pub step: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// This step's training loss.
    pub loss: f32,
    /// This step's learning rate.
    pub lr: f64,
    /// Training throughput over this run so far (tokens, patches or frames per second).
    pub units_per_s: f64,
    /// Validation loss, on steps that evaluated.
    pub val_loss: Option<f64>,
}

/// Wall-clock seconds of one optimizer step's phases.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepTimes {
    /// Drawing the batch and computing the loss.
    pub forward: f64,
    /// Gradients and their clipping.
    pub backward: f64,
    /// The AdamW update (and the weights' moving average, if any).
    pub optimizer: f64,
}

impl StepTimes {
    /// The whole step.
    pub fn total(&self) -> f64 {
        self.forward + self.backward + self.optimizer
    }
}

/// Where a training run starts from.
pub enum Start<'a, R> {
    /// A new model from this recipe.
    Fresh(&'a R),
    /// The checkpoint already in the output directory.
    Resume,
}

/// What the training loop needs from a model family.
pub trait Trainable: Module + Sized {
    /// Training and validation data, prepared for this model (shared by the threads of a
    /// multi-device step).
    type Data: Sync;

    /// Mean loss of one training batch, drawn from `data` with `rng`, on `device`.
    fn train_loss(
        &self,
        data: &Self::Data,
        train: &TrainConfig,
        rng: &mut StdRng,
        device: &Device,
    ) -> Tensor<1>;

    /// Validation loss of this (inference-mode) model; lower is better.
    fn val_loss(&self, data: &Self::Data, train: &TrainConfig) -> Result<f64>;

    /// The validation loss and, for a model of several parts, each part's (logged in
    /// `metrics.jsonl` as `val_parts`); by default just [`Trainable::val_loss`].
    fn val_losses(
        &self,
        data: &Self::Data,
        train: &TrainConfig,
    ) -> Result<(f64, std::collections::BTreeMap<String, f64>)> {
        Ok((self.val_loss(data, train)?, Default::default()))
    }

    /// Units (tokens, patches, frames) one training step consumes.
    fn units_per_step(train: &TrainConfig) -> usize;
}

/// The `config.json` of a new run of `model` trained with `train`.
pub(crate) fn run_config(model: ModelConfig, train: &TrainConfig) -> CheckpointConfig {
    CheckpointConfig {
        format_version: checkpoint::FORMAT_VERSION,
        model,
        train: Some(train.clone()),
        sampling: Default::default(),
    }
}

/// The `config.json` of a run fine-tuning a checkpoint (`init`): [`run_config`] with the
/// checkpoint's own sampling defaults, which suit the weights it starts from.
pub(crate) fn fine_tune_config(
    model: ModelConfig,
    train: &TrainConfig,
    sampling: checkpoint::SamplingDefaults,
) -> CheckpointConfig {
    CheckpointConfig {
        sampling,
        ..run_config(model, train)
    }
}

/// The model a fresh run starts from when it is not fine-tuning a whole checkpoint: `model`
/// (just built, with a core of architecture `core`), with the core weights of
/// `train.core_from` if set.
pub(crate) fn with_core_from<M: Module>(
    mut model: M,
    core: &crate::core::TransformerConfig,
    train: &TrainConfig,
) -> Result<M> {
    if let Some(dir) = &train.core_from {
        checkpoint::load_core(&mut model, core, dir)?;
    }
    Ok(model)
}

/// SplitMix64 finaliser: a well-spread seed for step `step` of a run seeded `seed`.
fn mix(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
