//! Training configuration: the optimisation settings every run records.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Optimisation settings of one run. Checkpoints keep it in `config.json` so `--resume`
/// continues with exactly these settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Optimizer steps in the whole run.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Tokens per training sequence (at most the model's `max_seq_len`).
    pub seq_len: usize,
    /// Peak learning rate, reached after warmup.
    pub lr: f64,
    /// Learning rate at the end of the cosine decay.
    pub min_lr: f64,
    /// Steps of linear warmup.
    pub warmup_steps: usize,
    /// AdamW decoupled weight decay (matrices and embeddings only).
    pub weight_decay: f64,
    /// AdamW first-moment decay.
    pub beta1: f32,
    /// AdamW second-moment decay (0.99 suits small batches, as in nanoGPT's char model).
    pub beta2: f32,
    /// Global gradient-norm limit; 0 disables clipping.
    pub grad_clip: f64,
    /// Evaluate on the validation split every this many steps (and at the end).
    pub eval_every: usize,
    /// Validation windows scored per periodic evaluation (spread over the whole split).
    pub eval_windows: usize,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
    /// Seed of initialisation, batch order and dropout.
    pub seed: u64,
    /// Conditional models: probability of replacing a training example's condition with the
    /// "no condition" token, so one model also generates unconditionally and supports
    /// classifier-free guidance. Default 0.
    #[serde(default)]
    pub label_dropout: f64,
    /// Decay of the exponential moving average of the weights that the checkpoint ships and
    /// samples with (e.g. 0.999); none: ship the last step's weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_decay: Option<f64>,
    /// How many steps in a row may be skipped because their loss or gradient is NaN or
    /// infinite (the step's batch is dropped and no weight changes). Beyond that, and at the
    /// first such step with 0 (the default), training stops with an error.
    #[serde(default, skip_serializing_if = "crate::checkpoint::is_zero")]
    pub skip_nonfinite_steps: usize,
    /// Gradient accumulation: each device runs this many shards of a step's batch one after
    /// another. The `batch_size` examples of a step are split evenly over `grad_accum` x
    /// devices shards and their gradients averaged, so a batch that does not fit in memory
    /// still trains as one. Default 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub grad_accum: usize,
    /// Fine-tuning: a checkpoint whose model (architecture, weights, tokenizer or codec
    /// statistics) the run starts from, instead of a new model from the recipe. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// A checkpoint (of any modality) whose Transformer core the new model starts with; the
    /// cores must have the same architecture. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_from: Option<PathBuf>,
    /// Train only the adapters and decoders: the core's weights get no gradients and never
    /// change (with `init` or `core_from`, the path for adding a modality to a trained core).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub freeze_core: bool,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl Default for TrainConfig {
    /// AdamW (0.9, 0.99, weight decay 0.1) at lr 1e-3 cosine to 1e-5 after 100 warmup steps,
    /// clipping at 1, 1,000 steps of 32 x 128 tokens, evaluation and checkpoints every 250
    /// steps, seed 1337; no label dropout, no weight averaging, one device-shard per step, a
    /// fresh model.
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 32,
            seq_len: 128,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup_steps: 100,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            grad_clip: 1.0,
            eval_every: 250,
            eval_windows: 256,
            checkpoint_every: 250,
            seed: 1337,
            label_dropout: 0.0,
            ema_decay: None,
            skip_nonfinite_steps: 0,
            grad_accum: 1,
            init: None,
            core_from: None,
            freeze_core: false,
        }
    }
}

impl TrainConfig {
    /// A few steps on tiny batches, for tests.
    pub fn tiny() -> Self {
        Self {
            steps: 8,
            batch_size: 4,
            seq_len: 16,
            lr: 3e-3,
            min_lr: 3e-4,
            warmup_steps: 2,
            eval_every: 4,
            eval_windows: 8,
            checkpoint_every: 4,
            ..Self::default()
        }
    }

    /// Training tokens consumed per optimizer step.
    pub fn tokens_per_step(&self) -> usize {
        self.batch_size * self.seq_len
    }

    /// Checks that text windows of `seq_len` tokens fit a core of `max_seq_len` positions.
    pub fn check_window(&self, max_seq_len: usize) -> Result<()> {
        match self.seq_len <= max_seq_len {
            true => Ok(()),
            false => Err(Error::Config(format!(
                "seq_len ({}) exceeds the model's max_seq_len ({max_seq_len})",
                self.seq_len
            ))),
        }
    }

    /// Checks the settings make sense together.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.steps == 0 || self.batch_size == 0 || self.seq_len == 0 {
            return bad("steps, batch_size and seq_len must be positive".into());
        }
        if self.eval_every == 0 || self.checkpoint_every == 0 || self.eval_windows == 0 {
            return bad("eval_every, eval_windows and checkpoint_every must be positive".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return bad(format!(
                "need 0 <= min_lr <= lr and lr > 0, got lr={} min_lr={}",
                self.lr, self.min_lr
            ));
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("beta1 and beta2 must be in [0, 1)".into());
        }
        if !(0.0..1.0).contains(&self.label_dropout) {
            return bad(format!(
                "label_dropout must be in [0, 1), got {}",
                self.label_dropout
            ));
        }
        if let Some(decay) = self.ema_decay.filter(|d| !(0.0..1.0).contains(d)) {
            return bad(format!("ema_decay must be in [0, 1), got {decay}"));
        }
        if self.grad_accum == 0 || !self.batch_size.is_multiple_of(self.grad_accum) {
            return bad(format!(
                "grad_accum must divide batch_size {}, got {}",
                self.batch_size, self.grad_accum
            ));
        }
        if self.init.is_some() && self.core_from.is_some() {
            return bad("init already brings a core; drop core_from".into());
        }
        if self.weight_decay < 0.0 || self.grad_clip < 0.0 {
            return bad("weight_decay and grad_clip must be >= 0".into());
        }
        Ok(())
    }
}
