//! Pretraining recipes (`--config FILE`): what `aigc pretrain <modality>` needs besides the
//! data, with the presets of the shipped models and tiny ones for tests.

use serde::{Deserialize, Serialize};

use super::TrainConfig;
use crate::core::TransformerConfig;
use crate::modality::audio::{AudioFormat, AudioModelConfig, OnsetPriorConfig};
use crate::modality::image::ImageModelConfig;
use crate::modality::text::TokenizerKind;
use crate::Result;

/// Everything `aigc pretrain text` needs besides the data: tokenizer, architecture, training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextRecipe {
    /// The tokenizer to build from the training split.
    pub tokenizer: TokenizerKind,
    /// The core's architecture (the vocabulary size comes from the tokenizer).
    pub core: TransformerConfig,
    /// Optimisation settings.
    pub train: TrainConfig,
}

impl TextRecipe {
    /// A tiny char-level model trained for a few steps, for tests.
    pub fn tiny() -> Self {
        Self {
            tokenizer: TokenizerKind::Char,
            core: TransformerConfig::tiny(),
            train: TrainConfig::tiny(),
        }
    }

    /// The shipped `models/text-shakespeare` recipe (also in `configs/text-shakespeare.json`):
    /// a 3.2M-parameter char-level model, 4 layers of width 256 over 128 characters, with
    /// dropout 0.1 against the overfitting a 1 MB corpus invites.
    pub fn shakespeare() -> Self {
        use crate::core::{Activation, Positions};
        Self {
            tokenizer: TokenizerKind::Char,
            core: TransformerConfig {
                d_model: 256,
                n_heads: 4,
                n_layers: 4,
                d_ff: 1024,
                max_seq_len: 128,
                dropout: 0.1,
                positions: Positions::Rope,
                activation: Activation::SquaredRelu,
                bias: false,
                rope_theta: 10_000.0,
            },
            train: TrainConfig {
                steps: 2500,
                lr: 2e-3,
                min_lr: 1e-4,
                ..TrainConfig::default()
            },
        }
    }

    /// Checks the recipe, including that sequences fit the model's context.
    pub fn validate(&self) -> Result<()> {
        self.core.validate()?;
        self.train.validate()?;
        self.train.check_window(self.core.max_seq_len)
    }
}

/// Everything `aigc pretrain image` needs besides the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecipe {
    /// The model (image geometry, classes, core, flow head).
    pub model: ImageModelConfig,
    /// Optimisation settings (`seq_len` is unused; `label_dropout` matters).
    pub train: TrainConfig,
}

impl ImageRecipe {
    /// A tiny 8x8 model trained for a few steps, for tests.
    pub fn tiny() -> Self {
        let mut train = TrainConfig::tiny();
        train.label_dropout = 0.1;
        Self {
            model: ImageModelConfig::tiny(),
            train,
        }
    }

    /// The shipped `models/image-mnist` recipe (DESIGN.md section 2): 28x28 digits in 4x4
    /// patches, a 4-layer 128-wide core with learned positions, a 3-block flow head.
    pub fn mnist() -> Self {
        use crate::core::{Activation, Positions};
        Self {
            model: ImageModelConfig {
                image: crate::modality::image::ImageShape::mnist(),
                n_classes: 10,
                core: TransformerConfig {
                    d_model: 128,
                    n_heads: 4,
                    n_layers: 4,
                    d_ff: 512,
                    max_seq_len: 49,
                    dropout: 0.0,
                    positions: Positions::Learned,
                    activation: Activation::SquaredRelu,
                    bias: false,
                    rope_theta: 10_000.0,
                },
                head_width: 128,
                head_blocks: 3,
                noise_draws: 4,
            },
            train: TrainConfig {
                steps: 6000,
                batch_size: 64,
                seq_len: 49,
                weight_decay: 0.01,
                eval_every: 500,
                eval_windows: 512,
                checkpoint_every: 500,
                label_dropout: 0.1,
                ..TrainConfig::default()
            },
        }
    }

    /// Checks the recipe.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.train.validate()
    }
}

/// Everything `aigc pretrain audio` needs besides the data (the codec statistics come from
/// the data when the run starts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioRecipe {
    /// The model (format, classes, core, flow head).
    pub model: AudioModelConfig,
    /// Optimisation settings (`seq_len` is unused; `label_dropout` matters).
    pub train: TrainConfig,
}

impl AudioRecipe {
    /// A tiny model trained for a few steps, for tests.
    pub fn tiny() -> Self {
        let mut train = TrainConfig::tiny();
        train.label_dropout = 0.1;
        Self {
            model: AudioModelConfig::tiny(),
            train,
        }
    }

    /// The shipped `models/audio-fsdd` recipe (DESIGN.md section 2): spoken digits at 8 kHz as
    /// log-magnitude STFT frames, 2 frames a unit, up to 1 s; a 4-layer 192-wide core with
    /// dropout 0.1 and a 3-block flow head 384 wide trained with logit-normal flow times and
    /// noisy inputs; the checkpoint ships the weights' moving average (decay 0.999) and an onset
    /// prior (one Gaussian per voice and digit over the first unit's 32 principal components
    /// and the log length).
    pub fn fsdd() -> Self {
        use crate::core::{Activation, Positions};
        Self {
            model: AudioModelConfig {
                format: AudioFormat::fsdd(),
                stats: None,
                n_classes: 10,
                core: TransformerConfig {
                    d_model: 192,
                    n_heads: 4,
                    n_layers: 4,
                    d_ff: 768,
                    max_seq_len: 64,
                    dropout: 0.1,
                    positions: Positions::Learned,
                    activation: Activation::SquaredRelu,
                    bias: false,
                    rope_theta: 10_000.0,
                },
                head_width: 384,
                head_blocks: 3,
                noise_draws: 4,
                input_noise: 0.1,
                flow_time: crate::modality::flow::FlowTime::LogitNormal,
                onset_prior: Some(OnsetPriorConfig {
                    components: 6,
                    dims: 32,
                    fitted: None,
                }),
            },
            train: TrainConfig {
                steps: 5500,
                seq_len: 64,
                weight_decay: 0.01,
                eval_every: 500,
                eval_windows: 300,
                label_dropout: 0.1,
                ema_decay: Some(0.999),
                ..TrainConfig::default()
            },
        }
    }

    /// Checks the recipe.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.train.validate()
    }
}

/// What every pretraining recipe offers the command line: its training settings and a check.
pub trait Recipe {
    /// The optimisation settings, to override steps or seed.
    fn train_mut(&mut self) -> &mut TrainConfig;
    /// Checks the whole recipe.
    fn check(&self) -> Result<()>;
}

impl Recipe for TextRecipe {
    fn train_mut(&mut self) -> &mut TrainConfig {
        &mut self.train
    }
    fn check(&self) -> Result<()> {
        self.validate()
    }
}

impl Recipe for ImageRecipe {
    fn train_mut(&mut self) -> &mut TrainConfig {
        &mut self.train
    }
    fn check(&self) -> Result<()> {
        self.validate()
    }
}

impl Recipe for super::MultiRecipe {
    fn train_mut(&mut self) -> &mut TrainConfig {
        &mut self.train
    }
    fn check(&self) -> Result<()> {
        self.train.validate()
    }
}

impl Recipe for AudioRecipe {
    fn train_mut(&mut self) -> &mut TrainConfig {
        &mut self.train
    }
    fn check(&self) -> Result<()> {
        self.validate()
    }
}

/// The recipe of the classifier that judges generated samples: pictures of `shape` in
/// `n_classes` classes, `epochs` passes over `n_train` pictures in batches of 64, at least
/// 200 steps (MNIST: 1.6 epochs = 1,500 steps; FSDD: 24 epochs = 1,013 steps).
pub fn classifier_recipe(
    shape: crate::modality::image::ImageShape,
    n_classes: usize,
    epochs: f64,
    n_train: usize,
) -> (crate::modality::judge::ClassifierConfig, TrainConfig) {
    let steps = ((epochs * n_train as f64 / 64.0).ceil() as usize).max(200);
    let model = crate::modality::judge::ClassifierConfig {
        image: shape,
        n_classes,
        features: 128,
    };
    let train = TrainConfig {
        steps,
        batch_size: 64,
        seq_len: 1,
        lr: 1e-3,
        min_lr: 1e-5,
        warmup_steps: 50,
        weight_decay: 0.0,
        beta2: 0.999,
        eval_every: 500,
        eval_windows: 2000,
        checkpoint_every: 500,
        seed: 7,
        ..TrainConfig::default()
    };
    (model, train)
}
