//! The audio front of the training loop: loads labelled clips, fits the codec's per-bin
//! statistics on a fresh run, batches clips of similar length, and writes audio checkpoints.

use std::ops::ControlFlow;
use std::path::Path;

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;

use super::{
    fine_tune_config, run_config, with_core_from, AudioRecipe, MetricsLog, Progress, Session,
    Start, TrainConfig, Trainable,
};
use crate::checkpoint::{
    self, checkpoint_err, with_article, ModelConfig, TrainState, WEIGHTS_FILE,
};
use crate::modality::audio::{
    encode, AudioDataset, AudioFormat, AudioModel, AudioModelConfig, BinStats, Onset,
    OnsetPriorConfig,
};
use crate::modality::Split;
use crate::{Error, Result};

/// Clips as units, with labels; batches draw from buckets of similar length.
pub struct AudioUnits {
    /// Units of each clip, `[n_units * unit_dim]`.
    clips: Vec<Vec<f32>>,
    labels: Vec<usize>,
    /// The voice of each clip, where its file name gives one.
    voices: Vec<Option<String>>,
    /// Clip indices sorted by length, cut into groups of about four batches.
    buckets: Vec<Vec<usize>>,
    unit_dim: usize,
}

impl AudioUnits {
    fn new(
        data: &AudioDataset,
        format: &AudioFormat,
        stats: &BinStats,
        bucket_size: usize,
    ) -> Self {
        let clips: Vec<Vec<f32>> = data
            .clips
            .iter()
            .map(|c| encode(format, stats, c))
            .collect();
        let mut order: Vec<usize> = (0..clips.len()).collect();
        order.sort_by_key(|&i| clips[i].len());
        let buckets = order
            .chunks(bucket_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        Self {
            clips,
            labels: data.labels.clone(),
            voices: data.voices.clone(),
            buckets,
            unit_dim: format.unit_dim(),
        }
    }

    /// `batch_size` clip indices: a bucket drawn in proportion to its size, then the clips
    /// drawn uniformly from it, so every clip is equally likely and a batch wastes little on
    /// padding.
    pub(super) fn draw(&self, batch_size: usize, rng: &mut StdRng) -> Vec<usize> {
        let pick = rng.random_range(0..self.clips.len());
        let mut seen = 0;
        let bucket = self
            .buckets
            .iter()
            .find(|b| {
                seen += b.len();
                pick < seen
            })
            .expect("pick < total clips");
        (0..batch_size)
            .map(|_| bucket[rng.random_range(0..bucket.len())])
            .collect()
    }

    /// The clips a validation pass scores, as batches: each bucket's leading clips, at most
    /// `limit` clips in all.
    pub(super) fn eval_batches(&self, limit: usize) -> Vec<&[usize]> {
        let mut left = limit;
        let mut batches = Vec::new();
        for bucket in &self.buckets {
            let take = bucket.len().min(left);
            if take == 0 {
                break;
            }
            batches.push(&bucket[..take]);
            left -= take;
        }
        batches
    }

    /// `prior` fitted to these clips' first units and lengths (see [`OnsetPriorConfig::fit`]).
    pub(super) fn fit_prior(
        &self,
        prior: &OnsetPriorConfig,
        n_classes: usize,
        seed: u64,
    ) -> Result<OnsetPriorConfig> {
        let onsets: Vec<Onset> = self
            .clips
            .iter()
            .map(|clip| Onset {
                unit: clip[..self.unit_dim].to_vec(),
                length: clip.len() / self.unit_dim,
            })
            .collect();
        let fitted = prior.fit(&onsets, &self.labels, &self.voices, n_classes, seed)?;
        Ok(OnsetPriorConfig {
            fitted: Some(fitted),
            ..prior.clone()
        })
    }

    /// The label of clip `i`.
    pub(super) fn label(&self, i: usize) -> usize {
        self.labels[i]
    }

    /// Clips `indices` zero-padded to the longest, their lengths and (possibly nulled) labels.
    pub(super) fn batch(
        &self,
        indices: &[usize],
        null: impl Fn(usize) -> Option<usize>,
        device: &Device,
    ) -> (Tensor<3>, Vec<usize>, Tensor<1, Int>) {
        let lengths: Vec<usize> = indices
            .iter()
            .map(|&i| self.clips[i].len() / self.unit_dim)
            .collect();
        let longest = lengths.iter().copied().max().unwrap_or(1);
        let mut values = vec![0.0f32; indices.len() * longest * self.unit_dim];
        for (k, &i) in indices.iter().enumerate() {
            let start = k * longest * self.unit_dim;
            values[start..start + self.clips[i].len()].copy_from_slice(&self.clips[i]);
        }
        let labels: Vec<i64> = indices
            .iter()
            .enumerate()
            .map(|(k, &i)| null(k).unwrap_or(self.labels[i]) as i64)
            .collect();
        let b = indices.len();
        (
            Tensor::from_data(TensorData::new(values, [b, longest, self.unit_dim]), device),
            lengths,
            Tensor::from_data(TensorData::new(labels, [b]), device),
        )
    }
}

/// Training and held-out clips as units.
pub struct AudioData {
    pub(super) train: AudioUnits,
    pub(super) test: AudioUnits,
    /// Class names; a label is an index into this list.
    pub(super) classes: Vec<String>,
}

impl AudioData {
    /// Loads both splits of the dataset at `path` for a model of `config` (whose statistics
    /// must be set), checking that the model covers the dataset's classes.
    pub fn load_splits(path: &Path, config: &AudioModelConfig, batch_size: usize) -> Result<Self> {
        let train = AudioDataset::load(path, Split::Train, &config.format)?;
        let test = AudioDataset::load(path, Split::Test, &config.format)?;
        Self::from_datasets(&train, &test, config, batch_size)
    }

    /// Loads both splits of the dataset at `path` for a new model of `config`, first fitting
    /// the codec's per-bin statistics on the training split (into `config`).
    pub fn fit_splits(
        path: &Path,
        config: &mut AudioModelConfig,
        batch_size: usize,
    ) -> Result<Self> {
        let train = AudioDataset::load(path, Split::Train, &config.format)?;
        let test = AudioDataset::load(path, Split::Test, &config.format)?;
        config.stats = Some(BinStats::fit(&config.format, &train.clips));
        Self::from_datasets(&train, &test, config, batch_size)
    }

    fn from_datasets(
        train: &AudioDataset,
        test: &AudioDataset,
        config: &AudioModelConfig,
        batch_size: usize,
    ) -> Result<Self> {
        if train.classes.len() > config.n_classes {
            return Err(Error::Config(format!(
                "the data has {} classes but the model has {}",
                train.classes.len(),
                config.n_classes
            )));
        }
        let stats = config.stats()?;
        Ok(Self {
            train: AudioUnits::new(train, &config.format, stats, 4 * batch_size),
            test: AudioUnits::new(test, &config.format, stats, batch_size),
            classes: train.classes.clone(),
        })
    }
}

impl Trainable for AudioModel {
    type Data = AudioData;

    /// A bucket drawn in proportion to its size, then a batch drawn uniformly from it: every
    /// clip is equally likely, and a batch wastes little on padding.
    fn train_loss(
        &self,
        data: &AudioData,
        train: &TrainConfig,
        rng: &mut StdRng,
        device: &Device,
    ) -> Tensor<1> {
        let indices = data.train.draw(train.batch_size, rng);
        let dropped: Vec<bool> = (0..train.batch_size)
            .map(|_| rng.random::<f64>() < train.label_dropout)
            .collect();
        let null = self.null_label();
        let (x, lengths, labels) =
            data.train
                .batch(&indices, |k| dropped[k].then_some(null), device);
        self.loss(x, &lengths, labels)
    }

    fn val_loss(&self, data: &AudioData, train: &TrainConfig) -> Result<f64> {
        let device = crate::default_device();
        let (mut total, mut count) = (0.0, 0);
        for batch in data.test.eval_batches(train.eval_windows) {
            let (x, lengths, labels) = data.test.batch(batch, |_| None, &device);
            total +=
                self.loss(x, &lengths, labels).into_scalar::<f32>() as f64 * batch.len() as f64;
            count += batch.len();
        }
        Ok(total / count.max(1) as f64)
    }

    fn units_per_step(train: &TrainConfig) -> usize {
        train.batch_size
    }
}

/// Trains a class-conditional audio model on the clips at `data`, writing checkpoints to `out`.
/// A fresh run first fits the codec's per-bin statistics on the training split, then the
/// recipe's onset prior if it has one (with its own generator, seeded with the run's seed, so
/// training draws the same either way).
pub fn pretrain_audio(
    data: &Path,
    out: &Path,
    start: Start<'_, AudioRecipe>,
    on_progress: impl FnMut(&Progress) -> ControlFlow<()>,
) -> Result<TrainState> {
    let device = crate::default_device().autodiff();
    let (mut session, config, clips) = match start {
        Start::Fresh(
            recipe @ AudioRecipe {
                train: TrainConfig {
                    init: Some(from), ..
                },
                ..
            },
        ) => {
            let (model, base) = checkpoint::load_audio(from, &device)?;
            let ModelConfig::Audio(audio) = base.model else {
                unreachable!("load_audio returns audio models")
            };
            let recipe = AudioRecipe {
                model: audio,
                ..recipe.clone()
            };
            recipe.validate()?;
            // the codec statistics the weights were trained with, not the new data's
            let clips = AudioData::load_splits(data, &recipe.model, recipe.train.batch_size)?;
            let session = Session::fresh(&recipe.train, device, |_| Ok(model))?;
            (
                session,
                fine_tune_config(
                    ModelConfig::Audio(recipe.model),
                    &recipe.train,
                    base.sampling,
                ),
                clips,
            )
        }
        Start::Fresh(recipe) => {
            recipe.validate()?;
            let mut model = recipe.model.clone();
            let clips = AudioData::fit_splits(data, &mut model, recipe.train.batch_size)?;
            if let Some(prior) = &model.onset_prior {
                let seed = recipe.train.seed;
                model.onset_prior = Some(clips.train.fit_prior(prior, model.n_classes, seed)?);
            }
            let session = Session::fresh(&recipe.train, device, |d| {
                with_core_from(model.init(d)?, &model.core, &recipe.train)
            })?;
            (
                session,
                run_config(ModelConfig::Audio(model), &recipe.train),
                clips,
            )
        }
        Start::Resume => {
            let (model, config) = checkpoint::load_audio(out, &device)?;
            let ModelConfig::Audio(audio) = &config.model else {
                unreachable!("load_audio returns audio models")
            };
            let session = Session::resumed(out, model, config.train.clone(), device)?;
            let clips = AudioData::load_splits(data, audio, session.train.batch_size)?;
            (session, config, clips)
        }
    };
    let save = |s: &Session<AudioModel>, metrics: &MetricsLog| s.save(out, &config, None, metrics);
    session.fit(&clips, out, save, on_progress)?;
    Ok(session.state)
}

/// Fits an onset prior shaped like `prior` (seeded with `seed`) to the training clips at
/// `data` for the trained audio model, or joint model's audio part, in `model_dir`, and writes
/// the model with it to `out` (which may be `model_dir`; see [`checkpoint::save_with_config`]:
/// every file but the config is copied as it is, without optimizer state). Takes seconds; no
/// weight changes.
pub fn fit_onset_prior(
    model_dir: &Path,
    data: &Path,
    prior: OnsetPriorConfig,
    seed: u64,
    out: &Path,
) -> Result<()> {
    let mut config = checkpoint::load_config(model_dir)?;
    let audio = match &config.model {
        ModelConfig::Audio(audio) => audio.clone(),
        ModelConfig::Multi(multi) => match &multi.audio {
            Some(part) => part.with_core(&multi.core),
            None => return Err(not_audio(model_dir, "a joint model without an audio part")),
        },
        other => return Err(not_audio(model_dir, &with_article(other.kind()))),
    };
    // The weights are copied, not changed; loading them first keeps a broken model from
    // being passed on with a prior.
    let (device, weights) = (crate::default_device(), model_dir.join(WEIGHTS_FILE));
    match &config.model {
        ModelConfig::Multi(multi) => checkpoint::load_weights(&mut multi.init(&device)?, &weights)?,
        _ => checkpoint::load_weights(&mut audio.init(&device)?, &weights)?,
    }
    let clips = AudioData::load_splits(data, &audio, 1)?;
    let fitted = Some(clips.train.fit_prior(&prior, audio.n_classes, seed)?);
    match &mut config.model {
        ModelConfig::Audio(audio) => audio.onset_prior = fitted,
        ModelConfig::Multi(multi) => {
            let part = multi.audio.as_mut().expect("checked above");
            part.onset_prior = fitted;
        }
        _ => unreachable!("checked above"),
    }
    checkpoint::save_with_config(model_dir, &config, out)
}

fn not_audio(dir: &Path, what: &str) -> Error {
    checkpoint_err(
        dir,
        format!("holds {what}, not an audio or joint model with audio"),
    )
}
