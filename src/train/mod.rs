//! The one training loop: AdamW (decoupled weight decay on matrices only), warmup + cosine
//! learning rate, global-norm clipping, periodic evaluation on the held-out split, JSONL
//! metrics, atomic checkpoints and exact resume.
//!
//! Determinism: the batch of step `s` and its dropout masks are drawn from RNGs seeded by
//! `(seed, s)`, so a run resumed from a checkpoint takes exactly the steps an uninterrupted
//! run would have taken.

mod clip;
mod config;
mod eval;
mod metrics;
mod schedule;

pub use clip::clip_global_norm;
pub use config::{TextRecipe, TrainConfig};
pub use eval::{evaluate, evaluate_val_split, Score, TextScore};
pub use metrics::{Metrics, MetricsLog};
pub use schedule::lr_at;

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::checkpoint::{self, Checkpoint, CheckpointConfig, ModelConfig, TrainState};
use crate::modality::text::{Corpus, Split, TextModel, TextModelConfig, TextTokenizer};
use crate::{Error, Result};

/// One optimizer step's report, for progress bars.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Steps completed.
    pub step: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// This step's training loss (nats per token).
    pub loss: f32,
    /// This step's learning rate.
    pub lr: f64,
    /// Training throughput over this run so far.
    pub tokens_per_s: f64,
    /// Validation loss, on steps that evaluated.
    pub val_loss: Option<f64>,
}

/// Where a training run starts from.
pub enum Start<'a> {
    /// A new model from `recipe`, with the corpus text to build its tokenizer from.
    Fresh(&'a TextRecipe),
    /// The checkpoint already in the output directory.
    Resume,
}

/// Trains a text model on the corpus at `data`, writing checkpoints to `out`.
///
/// `on_progress` sees every step; returning `ControlFlow::Break` saves a checkpoint and stops
/// early (a later `Start::Resume` continues exactly where it left off).
pub fn pretrain_text(
    data: &Path,
    out: &Path,
    start: Start<'_>,
    mut on_progress: impl FnMut(&Progress) -> ControlFlow<()>,
) -> Result<TrainState> {
    let device = crate::default_device().autodiff();
    let text = crate::modality::text::read_text(data)?;
    let (model, tokenizer, config, state, optim) = match start {
        Start::Fresh(recipe) => fresh_run(recipe, &text, &device)?,
        Start::Resume => resumed_run(out, &device)?,
    };
    let train = config
        .train
        .clone()
        .expect("checkpoint configs made by training carry train");
    let corpus = Corpus::new(&text, &tokenizer, train.seq_len, data)?;
    let mut metrics = MetricsLog::open(out, state.step)?;
    let mut run = Run {
        model,
        optim,
        state,
        config,
        tokenizer,
        train,
        device,
    };
    if run.state.step == 0 {
        run.save(out, &metrics)?; // resolved config on disk before step 0; proves `out` is writable
    }
    let started = Instant::now();
    let first_step = run.state.step;
    let seconds_before = run.state.train_seconds;
    while run.state.step < run.train.steps {
        let loss = run.step(&corpus)?;
        let s = run.state.step;
        let tokens_per_s = ((s - first_step) * run.train.tokens_per_step()) as f64
            / started.elapsed().as_secs_f64();
        let last = s == run.train.steps;
        let val_loss = (s % run.train.eval_every == 0 || last)
            .then(|| run.eval(&corpus))
            .transpose()?;
        run.state.train_seconds = seconds_before + started.elapsed().as_secs_f64();
        run.state.train_loss = Some(loss as f64);
        if val_loss.is_some() {
            run.state.val_loss = val_loss;
        }
        let lr = run.lr(s - 1);
        metrics.append(&Metrics {
            step: s,
            loss,
            lr,
            tokens_per_s,
            val_loss,
            tokens_seen: run.state.tokens_seen,
        })?;
        let flow = on_progress(&Progress {
            step: s,
            total_steps: run.train.steps,
            loss,
            lr,
            tokens_per_s,
            val_loss,
        });
        if s % run.train.checkpoint_every == 0 || last || flow.is_break() {
            run.save(out, &metrics)?;
        }
        if flow.is_break() {
            break;
        }
    }
    Ok(run.state)
}

type Loaded = (
    TextModel,
    TextTokenizer,
    CheckpointConfig,
    TrainState,
    ModuleOptimizer,
);

fn fresh_run(recipe: &TextRecipe, text: &str, device: &Device) -> Result<Loaded> {
    recipe.validate()?;
    let (train_text, _) = crate::modality::text::split_text(text);
    let tokenizer = TextTokenizer::build(recipe.tokenizer, train_text)?;
    let model_config = TextModelConfig {
        vocab_size: tokenizer.vocab_size(),
        core: recipe.core.clone(),
    };
    let model = {
        let _rng = lock_device_rng();
        device.seed(recipe.train.seed);
        let model = model_config.init(device)?;
        // Parameters initialise lazily, on first use; draw them all now, under the lock.
        model.visit(&mut InitNow);
        model
    };
    let config = CheckpointConfig {
        format_version: checkpoint::FORMAT_VERSION,
        model: ModelConfig::Text(model_config),
        train: Some(recipe.train.clone()),
    };
    let optim = optimizer(&recipe.train);
    Ok((model, tokenizer, config, TrainState::default(), optim))
}

fn resumed_run(out: &Path, device: &Device) -> Result<Loaded> {
    let (model, tokenizer, config) = checkpoint::load_text(out, device)?;
    let state = checkpoint::load_train_state(out)?;
    let train = config.train.clone().ok_or_else(|| Error::Checkpoint {
        path: out.to_path_buf(),
        message: "config.json has no training section, so there is nothing to resume".into(),
    })?;
    let model = checkpoint::restore_param_ids(model, &state);
    let optim_path = out.join(checkpoint::OPTIMIZER_FILE);
    let optim = optimizer(&train)
        .load(&optim_path)
        .map_err(|e| Error::Checkpoint {
            path: optim_path,
            message: format!("cannot resume without optimizer state: {e}"),
        })?;
    Ok((model, tokenizer, config, state, optim))
}

/// AdamW with weight decay on weight matrices and embeddings only (not on norms or biases).
fn optimizer(train: &TrainConfig) -> ModuleOptimizer {
    let adamw = |decay: f64| {
        AdamWConfig::new()
            .with_beta_1(train.beta1)
            .with_beta_2(train.beta2)
            .with_epsilon(1e-8)
            .with_weight_decay(decay as f32)
    };
    adamw(train.weight_decay).init().with_group(
        ParamGroup::from_any_predicates(vec!["gamma", "beta", "bias"]),
        adamw(0.0).build(),
        None,
    )
}

/// The mutable state of a run in progress.
struct Run {
    model: TextModel,
    optim: ModuleOptimizer,
    state: TrainState,
    config: CheckpointConfig,
    tokenizer: TextTokenizer,
    train: TrainConfig,
    device: Device,
}

impl Run {
    fn lr(&self, step: usize) -> f64 {
        let t = &self.train;
        lr_at(step, t.steps, t.lr, t.min_lr, t.warmup_steps)
    }

    /// One optimizer step; returns its training loss.
    fn step(&mut self, corpus: &Corpus) -> Result<f32> {
        let step = self.state.step;
        let t = &self.train;
        let step_seed = mix(t.seed, step as u64);
        let mut rng = StdRng::seed_from_u64(step_seed);
        let (x, y) = corpus.random_batch(Split::Train, t.batch_size, t.seq_len, &mut rng);
        let shape = [t.batch_size, t.seq_len];
        let x = Tensor::<2, Int>::from_data(TensorData::new(x, shape), &self.device);
        let y = Tensor::<2, Int>::from_data(TensorData::new(y, shape), &self.device);
        let loss = {
            let _rng = lock_device_rng();
            self.device.seed(step_seed ^ 0x5eed); // dropout masks of this step
            self.model.loss(x, y)
        };
        let value = loss.clone().into_scalar::<f32>();
        if !value.is_finite() {
            return Err(Error::Diverged { step, loss: value });
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &self.model);
        clip_global_norm(&self.model, &mut grads, t.grad_clip);
        let lr = self.lr(step);
        self.model = self.optim.step(lr, self.model.clone(), grads);
        self.state.step += 1;
        self.state.tokens_seen += t.tokens_per_step() as u64;
        Ok(value)
    }

    fn eval(&self, corpus: &Corpus) -> Result<f64> {
        let model = self.model.valid();
        let t = &self.train;
        let score = evaluate(
            &model,
            corpus.tokens(Split::Val),
            t.seq_len,
            t.batch_size,
            Some(t.eval_windows),
        )?;
        Ok(score.nats_per_token())
    }

    fn save(&self, out: &Path, metrics: &MetricsLog) -> Result<()> {
        let card = crate::modality::text::model_card(&self.config, &self.state);
        Checkpoint {
            config: &self.config,
            model: &self.model,
            tokenizer: &self.tokenizer,
            state: &self.state,
            optimizer: Some(&self.optim),
            card: &card,
        }
        .save_with(out, |tmp| metrics.copy_into(tmp))
    }
}

/// Touches every parameter so lazily initialised ones are drawn immediately.
struct InitNow;

impl ModuleVisitor for InitNow {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// burn's device RNG is one per process. Seeding it and drawing from it (initialisation,
/// dropout) happen under this lock, so runs sharing a process stay reproducible.
fn lock_device_rng() -> std::sync::MutexGuard<'static, ()> {
    static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    DEVICE_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SplitMix64 finaliser: a well-spread seed for step `step` of a run seeded `seed`.
fn mix(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
