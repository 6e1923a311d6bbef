//! The joint front of the training loop: one core trained on text, images and audio at once.
//! Each step draws one modality (with the recipe's mix weights) and a batch of it, and scales
//! its loss by the modality's loss weight (the logged training loss is the scaled one); image and
//! audio examples are conditioned on their label, on a caption built from it (one of the
//! training phrasings in `modality::multi::prompts`), or on nothing (label dropout).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::audio::AudioData;
use super::image::{batch as image_batch, ImageData};
use super::{
    evaluate, fine_tune_config, run_config, with_core_from, MetricsLog, Progress, Session, Start,
    TrainConfig, Trainable,
};
use crate::checkpoint::{self, ModelConfig, TrainState};
use crate::modality::multi::prompts::{encoded_prompts, prompts};
use crate::modality::multi::{Condition, MultiModel, MultiModelConfig};
use crate::modality::text::{read_text, split_text, Corpus, Split, TextTokenizer, TokenizerKind};
use crate::modality::Modality;
use crate::{Error, Result};

/// Everything `aigc pretrain multi` needs besides the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiRecipe {
    /// The text tokenizer, built from the text data and the captions.
    pub tokenizer: TokenizerKind,
    /// The model; `vocab_size`, `prompt_len` and the audio statistics are filled in from the
    /// data when a run starts.
    pub model: MultiModelConfig,
    /// Optimisation settings (one `batch_size` for every modality; `seq_len` is the text
    /// window).
    pub train: TrainConfig,
}

impl MultiRecipe {
    /// A few steps of a tiny joint model (8x8 images, short clips), for tests.
    pub fn tiny() -> Self {
        use crate::core::{Positions, TransformerConfig};
        use crate::modality::audio::AudioModelConfig;
        use crate::modality::image::ImageModelConfig;
        use crate::modality::multi::{AudioPartConfig, ImagePartConfig, Mix};
        let (image, audio) = (ImageModelConfig::tiny(), AudioModelConfig::tiny());
        Self {
            tokenizer: TokenizerKind::Char,
            model: MultiModelConfig {
                core: TransformerConfig {
                    positions: Positions::Learned,
                    max_seq_len: 48,
                    ..TransformerConfig::tiny()
                },
                vocab_size: 0,
                prompt_len: 0,
                image: Some(ImagePartConfig {
                    image: image.image,
                    n_classes: image.n_classes,
                    head_width: image.head_width,
                    head_blocks: image.head_blocks,
                    noise_draws: image.noise_draws,
                }),
                audio: Some(AudioPartConfig {
                    format: audio.format,
                    stats: None,
                    n_classes: audio.n_classes,
                    head_width: audio.head_width,
                    head_blocks: audio.head_blocks,
                    noise_draws: audio.noise_draws,
                    input_noise: audio.input_noise,
                    flow_time: audio.flow_time,
                    onset_prior: audio.onset_prior,
                }),
                mix: Mix::even(),
                loss_weights: Mix::even(),
                prompt_fraction: 0.5,
                condition_slots: 1,
            },
            train: TrainConfig {
                steps: 12,
                label_dropout: 0.1,
                ..TrainConfig::tiny()
            },
        }
    }
}

/// Where a joint run's data is; at least one path is needed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MultiPaths {
    /// A UTF-8 file or folder of `.txt` files.
    pub text: Option<PathBuf>,
    /// MNIST IDX files or class sub-folders of images.
    pub image: Option<PathBuf>,
    /// Labelled WAV files.
    pub audio: Option<PathBuf>,
}

/// A joint run's data, with each class's captions as token ids.
pub struct MultiData {
    text: Option<Corpus>,
    image: Option<(ImageData, Vec<Vec<Vec<u32>>>)>,
    audio: Option<(AudioData, Vec<Vec<Vec<u32>>>)>,
}

/// The conditions of a batch with these `labels`: nothing with probability `label_dropout`,
/// else a caption with probability `prompt_fraction`, else the label.
fn conditions(
    labels: &[usize],
    captions: &[Vec<Vec<u32>>],
    train: &TrainConfig,
    prompt_fraction: f64,
    rng: &mut StdRng,
) -> Vec<Condition> {
    labels
        .iter()
        .map(|&label| {
            if rng.random::<f64>() < train.label_dropout {
                Condition::Unconditional
            } else if rng.random::<f64>() < prompt_fraction {
                let options = &captions[label];
                Condition::Prompt(options[rng.random_range(0..options.len())].clone())
            } else {
                Condition::Label(label)
            }
        })
        .collect()
}

impl MultiModel {
    fn pick_modality(&self, data: &MultiData, rng: &mut StdRng) -> Modality {
        let has_data = [
            (Modality::Text, data.text.is_some()),
            (Modality::Image, data.image.is_some()),
            (Modality::Audio, data.audio.is_some()),
        ];
        let weights = has_data.map(|(m, has)| (m, self.mix().of(m) * has as u8 as f64));
        let total: f64 = weights.iter().map(|w| w.1).sum();
        let mut u = rng.random::<f64>() * total;
        for (modality, w) in weights {
            if u < w {
                return modality;
            }
            u -= w;
        }
        weights
            .iter()
            .rev()
            .find(|w| w.1 > 0.0)
            .map_or(Modality::Text, |w| w.0)
    }
}

impl Trainable for MultiModel {
    type Data = MultiData;

    fn train_loss(
        &self,
        data: &MultiData,
        train: &TrainConfig,
        rng: &mut StdRng,
        device: &Device,
    ) -> Tensor<1> {
        let b = train.batch_size;
        let checked = "labels and captions were checked when the data loaded";
        let modality = self.pick_modality(data, rng);
        let loss = match modality {
            Modality::Text => {
                let corpus = data.text.as_ref().expect("picked modalities have data");
                let (x, y) = corpus.random_batch(Split::Train, b, train.seq_len, rng);
                let shape = [b, train.seq_len];
                let x = Tensor::<2, Int>::from_data(TensorData::new(x, shape), device);
                let y = Tensor::<2, Int>::from_data(TensorData::new(y, shape), device);
                self.text().loss(x, y)
            }
            Modality::Image => {
                let (images, captions) = data.image.as_ref().expect("picked modalities have data");
                let indices: Vec<usize> = (0..b)
                    .map(|_| rng.random_range(0..images.train.len()))
                    .collect();
                let labels: Vec<usize> = indices.iter().map(|&i| images.train.label(i)).collect();
                let conds = conditions(&labels, captions, train, self.prompt_fraction(), rng);
                let (patches, _) = image_batch(&images.train, &indices, |_| None, device);
                self.image_loss(patches, &conds, &labels).expect(checked)
            }
            Modality::Audio => {
                let (clips, captions) = data.audio.as_ref().expect("picked modalities have data");
                let indices = clips.train.draw(b, rng);
                let labels: Vec<usize> = indices.iter().map(|&i| clips.train.label(i)).collect();
                let conds = conditions(&labels, captions, train, self.prompt_fraction(), rng);
                let (units, lengths, _) = clips.train.batch(&indices, |_| None, device);
                self.audio_loss(units, &lengths, &conds, &labels)
                    .expect(checked)
            }
        };
        loss * self.loss_weights().of(modality)
    }

    /// The mix-weighted mean of each modality's validation loss (label-conditioned).
    fn val_loss(&self, data: &MultiData, train: &TrainConfig) -> Result<f64> {
        Ok(self.val_losses(data, train)?.0)
    }

    /// The mix-weighted mean, and each modality's validation loss (label-conditioned).
    fn val_losses(
        &self,
        data: &MultiData,
        train: &TrainConfig,
    ) -> Result<(f64, BTreeMap<String, f64>)> {
        let device = crate::default_device();
        let mix = self.mix();
        let mut parts = Vec::new();
        if let Some(corpus) = &data.text {
            let tokens = corpus.tokens(Split::Val);
            let text = self.text();
            let score = evaluate(
                &text,
                tokens,
                train.seq_len,
                train.batch_size,
                Some(train.eval_windows),
            )?;
            parts.push((Modality::Text, mix.text, score.nats_per_token()));
        }
        if let Some((images, _)) = &data.image {
            let n = train.eval_windows.min(images.test.len());
            let (mut total, indices) = (0.0, (0..n).collect::<Vec<usize>>());
            for chunk in indices.chunks(train.batch_size) {
                let (patches, _) = image_batch(&images.test, chunk, |_| None, &device);
                let labels: Vec<usize> = chunk.iter().map(|&i| images.test.label(i)).collect();
                let conds: Vec<Condition> = labels.iter().map(|&l| Condition::Label(l)).collect();
                total += self
                    .image_loss(patches, &conds, &labels)?
                    .into_scalar::<f32>() as f64
                    * chunk.len() as f64;
            }
            parts.push((Modality::Image, mix.image, total / n.max(1) as f64));
        }
        if let Some((clips, _)) = &data.audio {
            let (mut total, mut count) = (0.0, 0);
            for chunk in clips.test.eval_batches(train.eval_windows) {
                let (units, lengths, _) = clips.test.batch(chunk, |_| None, &device);
                let labels: Vec<usize> = chunk.iter().map(|&i| clips.test.label(i)).collect();
                let conds: Vec<Condition> = labels.iter().map(|&l| Condition::Label(l)).collect();
                total += self
                    .audio_loss(units, &lengths, &conds, &labels)?
                    .into_scalar::<f32>() as f64
                    * chunk.len() as f64;
                count += chunk.len();
            }
            parts.push((Modality::Audio, mix.audio, total / count.max(1) as f64));
        }
        let weight: f64 = parts.iter().map(|p| p.1).sum();
        let mean = parts.iter().map(|p| p.1 * p.2).sum::<f64>() / weight.max(f64::MIN_POSITIVE);
        let each = parts
            .iter()
            .map(|(m, _, loss)| (m.to_string(), *loss))
            .collect();
        Ok((mean, each))
    }

    fn units_per_step(train: &TrainConfig) -> usize {
        train.batch_size
    }
}

/// A joint run's images and clips, read once.
struct Media {
    images: Option<ImageData>,
    clips: Option<AudioData>,
}

/// Reads the images and clips at `paths` for the parts of `config`. A fresh run (`fresh`)
/// first drops the parts it has no data for, so its checkpoints hold only trained parts,
/// then fits the audio part's codec statistics (and its onset prior, if it has one, with
/// `seed`) on the training clips and stores them in `config`; a resumed run uses the
/// config's own. Data for a part the model lacks is an error.
fn load_media(
    paths: &MultiPaths,
    config: &mut MultiModelConfig,
    fresh: bool,
    batch_size: usize,
    seed: u64,
) -> Result<Media> {
    if fresh {
        config.image = config.image.take().filter(|_| paths.image.is_some());
        config.audio = config.audio.take().filter(|_| paths.audio.is_some());
    }
    for (modality, given, part) in [
        (Modality::Image, &paths.image, config.image.is_some()),
        (Modality::Audio, &paths.audio, config.audio.is_some()),
    ] {
        if given.is_some() && !part {
            return Err(Error::Input(format!(
                "{modality} data was given, but this joint model has no {modality} part"
            )));
        }
    }
    let images = match (&paths.image, &config.image) {
        (Some(path), Some(part)) => Some(ImageData::load_splits(path, part.image, part.n_classes)?),
        _ => None,
    };
    let clips = match (&paths.audio, &mut config.audio) {
        (Some(path), Some(part)) => {
            let mut audio = part.with_core(&config.core);
            let clips = match fresh {
                true => AudioData::fit_splits(path, &mut audio, batch_size)?,
                false => AudioData::load_splits(path, &audio, batch_size)?,
            };
            part.stats = audio.stats;
            if let (true, Some(prior)) = (fresh, &part.onset_prior) {
                part.onset_prior = Some(clips.train.fit_prior(prior, part.n_classes, seed)?);
            }
            Some(clips)
        }
        _ => None,
    };
    Ok(Media { images, clips })
}

/// The run's data: `text` as a corpus, and `media` with each class's captions read with
/// `tokenizer`; checks that text windows and captions fit the model (a fine-tuned or resumed
/// model keeps its context and prompt length) and that the mix trains at least one modality
/// the run has data for.
fn load_data(
    paths: &MultiPaths,
    config: &MultiModelConfig,
    tokenizer: &TextTokenizer,
    text: Option<&str>,
    media: Media,
    train: &TrainConfig,
) -> Result<MultiData> {
    let text = match (text, &paths.text) {
        (Some(text), Some(path)) => {
            train.check_window(config.core.max_seq_len)?;
            Some(Corpus::new(text, tokenizer, train.seq_len, path)?)
        }
        _ => None,
    };
    let captions = |modality, classes: &[String]| -> Result<Vec<Vec<Vec<u32>>>> {
        let encoded = encoded_prompts(tokenizer, modality, classes)?;
        for (class, phrasings) in classes.iter().zip(&encoded) {
            if let Some(long) = phrasings.iter().find(|p| p.len() > config.prompt_len) {
                return Err(Error::Input(format!(
                    "a caption of {modality} class {class:?} is {} tokens long; this model reads \
                     prompts of at most {} (a new joint run sizes them to its classes)",
                    long.len(),
                    config.prompt_len
                )));
            }
        }
        Ok(encoded)
    };
    let image = match media.images {
        Some(images) => {
            let captions = captions(Modality::Image, &images.train.classes)?;
            Some((images, captions))
        }
        None => None,
    };
    let audio = match media.clips {
        Some(clips) => {
            let captions = captions(Modality::Audio, &clips.classes)?;
            Some((clips, captions))
        }
        None => None,
    };
    let mix = config.mix;
    let weighted = [
        (text.is_some(), mix.text),
        (image.is_some(), mix.image),
        (audio.is_some(), mix.audio),
    ];
    if !weighted
        .iter()
        .any(|&(present, weight)| present && weight > 0.0)
    {
        return Err(Error::Config(format!(
            "the mix {mix:?} gives no weight to the modalities the run has data for"
        )));
    }
    Ok(MultiData { text, image, audio })
}

/// Trains a joint model on the data at `paths`, writing checkpoints to `out`. A fresh run
/// fits the audio statistics, builds the tokenizer from the text and the captions, and sizes
/// the prompt slot to the longest caption; with `core_from` its core starts from that
/// checkpoint's (frozen with `freeze_core`). A run with `init` fine-tunes that joint
/// checkpoint: its model, tokenizer and audio statistics, with the recipe's training settings.
pub fn pretrain_multi(
    paths: &MultiPaths,
    out: &Path,
    start: Start<'_, MultiRecipe>,
    on_progress: impl FnMut(&Progress) -> ControlFlow<()>,
) -> Result<TrainState> {
    if paths.text.is_none() && paths.image.is_none() && paths.audio.is_none() {
        return Err(Error::Input(
            "a joint run needs text, image or audio data".into(),
        ));
    }
    let device = crate::default_device().autodiff();
    let text = paths.text.as_deref().map(read_text).transpose()?;
    let (mut session, tokenizer, config, media) = match start {
        Start::Fresh(
            recipe @ MultiRecipe {
                train: TrainConfig {
                    init: Some(from), ..
                },
                ..
            },
        ) => {
            recipe.train.validate()?;
            let (model, tokenizer, base) = checkpoint::load_multi(from, &device)?;
            let ModelConfig::Multi(mut model_config) = base.model else {
                unreachable!("load_multi returns joint models")
            };
            // the architecture is the checkpoint's; how to train it is the recipe's
            model_config.mix = recipe.model.mix;
            model_config.loss_weights = recipe.model.loss_weights;
            model_config.prompt_fraction = recipe.model.prompt_fraction;
            let (batch_size, seed) = (recipe.train.batch_size, recipe.train.seed);
            let media = load_media(paths, &mut model_config, false, batch_size, seed)?;
            let model = model.with_training_settings(&model_config);
            let session = Session::fresh(&recipe.train, device, |_| Ok(model))?;
            let multi = ModelConfig::Multi(model_config);
            let config = fine_tune_config(multi, &recipe.train, base.sampling);
            (session, tokenizer, config, media)
        }
        Start::Fresh(recipe) => {
            recipe.train.validate()?;
            let mut model = recipe.model.clone();
            let (batch_size, seed) = (recipe.train.batch_size, recipe.train.seed);
            let media = load_media(paths, &mut model, true, batch_size, seed)?;
            let tokenizer = fit_tokenizer(recipe.tokenizer, &mut model, &media, text.as_deref())?;
            let session = Session::fresh(&recipe.train, device, |d| {
                with_core_from(model.init(d)?, &model.core, &recipe.train)
            })?;
            let config = run_config(ModelConfig::Multi(model), &recipe.train);
            (session, tokenizer, config, media)
        }
        Start::Resume => {
            let (model, tokenizer, config) = checkpoint::load_multi(out, &device)?;
            let session = Session::resumed(out, model, config.train.clone(), device)?;
            let ModelConfig::Multi(mut model_config) = config.model.clone() else {
                unreachable!("load_multi returns joint models")
            };
            let (batch_size, seed) = (session.train.batch_size, session.train.seed);
            let media = load_media(paths, &mut model_config, false, batch_size, seed)?;
            (session, tokenizer, config, media)
        }
    };
    let ModelConfig::Multi(model_config) = &config.model else {
        unreachable!("built or loaded as a joint model above")
    };
    let text = text.as_deref();
    let data = load_data(paths, model_config, &tokenizer, text, media, &session.train)?;
    let save = |s: &Session<MultiModel>, metrics: &MetricsLog| {
        s.save(out, &config, Some(&tokenizer), metrics)
    };
    session.fit(&data, out, save, on_progress)?;
    Ok(session.state)
}

/// The tokenizer of a fresh run, built from the text's training split and every caption of
/// the classes in `media`; sets `model`'s vocabulary size and its prompt slot (the longest
/// caption), then checks the model.
fn fit_tokenizer(
    kind: TokenizerKind,
    model: &mut MultiModelConfig,
    media: &Media,
    text: Option<&str>,
) -> Result<TextTokenizer> {
    let image_classes = media
        .images
        .as_ref()
        .map(|i| (Modality::Image, &i.train.classes));
    let audio_classes = media.clips.as_ref().map(|c| (Modality::Audio, &c.classes));
    let all_captions: Vec<String> = image_classes
        .into_iter()
        .chain(audio_classes)
        .flat_map(|(m, names)| {
            names
                .iter()
                .flat_map(move |n| [prompts(m, n, false), prompts(m, n, true)].concat())
        })
        .collect();
    let corpus = format!(
        "{}\n{}",
        text.map_or("", |t| split_text(t).0),
        all_captions.join("\n")
    );
    let tokenizer = TextTokenizer::build(kind, &corpus)?;
    model.vocab_size = tokenizer.vocab_size();
    model.prompt_len = all_captions
        .iter()
        .map(|c| tokenizer.encode(c).map(|ids| ids.len()))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .max()
        .unwrap_or(1);
    model.validate()?;
    Ok(tokenizer)
}
