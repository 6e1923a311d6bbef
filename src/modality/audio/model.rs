//! The audio model: a class token, a length token and frame embeddings go through the shared
//! core. The output at the class position predicts the clip's length (in units); the length is
//! fed back, and from then on the output at position `i` conditions a rectified-flow head
//! that draws unit `i` (a group of log-magnitude spectrogram frames), as for image patches.
//!
//! ```text
//! input:  [class] [length] [unit 0] ... [unit N-2]
//! output:   len     z0       z1     ...   z(N-1)      z_i -> FlowHead -> unit i
//! ```
//!
//! With an onset prior (see [`super::prior`]), each clip's length and first unit are drawn
//! from a mixture fitted to the training clips, and the network draws the rest.

use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::codec::{AudioFormat, BinStats};
use super::parts::AudioParts;
use super::prior::{spread_picks, OnsetPrior, OnsetPriorConfig};
use crate::core::{Positions, Transformer, TransformerConfig, INIT_STD};
use crate::modality::continuous::{condition_ids, FlowGenerateOptions};
use crate::modality::flow::{FlowHead, FlowHeadConfig, FlowTime};
use crate::{Error, Result};

/// Shape of an audio model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioModelConfig {
    /// Sample rate, framing and clip length limit.
    pub format: AudioFormat,
    /// Per-bin log-magnitude statistics of the training clips; filled in from the data when a
    /// run starts (`None` in a recipe).
    #[serde(default)]
    pub stats: Option<BinStats>,
    /// Number of class labels; label id `n_classes` is "no label".
    pub n_classes: usize,
    /// The shared core; `max_seq_len` must cover the length token and `max_units` units.
    pub core: TransformerConfig,
    /// Hidden width of the flow head.
    pub head_width: usize,
    /// Residual blocks in the flow head.
    pub head_blocks: usize,
    /// Noise/time draws per unit in the training loss.
    pub noise_draws: usize,
    /// Standard deviation of Gaussian noise added to the teacher-forced input units in
    /// training, so the model tolerates its own imperfect samples.
    pub input_noise: f32,
    /// How the training loss draws flow times. Default: logit-normal.
    #[serde(default = "logit_normal")]
    pub flow_time: FlowTime,
    /// Draws each clip's length and first unit from a mixture fitted to the training clips
    /// (fitted when a run starts). `None`: the network draws them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset_prior: Option<OnsetPriorConfig>,
}

fn logit_normal() -> FlowTime {
    FlowTime::LogitNormal
}

impl AudioModelConfig {
    /// A model small enough for unit tests: 64-sample frames, clips of at most 8 units.
    pub fn tiny() -> Self {
        Self {
            format: AudioFormat {
                n_fft: 64,
                hop_len: 32,
                max_units: 8,
                griffin_lim_iters: 8,
                ..AudioFormat::fsdd()
            },
            stats: None,
            n_classes: 3,
            core: TransformerConfig {
                positions: Positions::Learned,
                ..TransformerConfig::tiny()
            },
            head_width: 32,
            head_blocks: 2,
            noise_draws: 2,
            input_noise: 0.1,
            flow_time: FlowTime::LogitNormal,
            onset_prior: None,
        }
    }

    /// The flow head this config implies.
    pub fn head(&self) -> FlowHeadConfig {
        FlowHeadConfig {
            unit_dim: self.format.unit_dim(),
            cond_dim: self.core.d_model,
            width: self.head_width,
            n_blocks: self.head_blocks,
        }
    }

    /// Checks the pieces fit together (the statistics may still be missing).
    pub fn validate(&self) -> Result<()> {
        self.format.validate()?;
        self.core.validate()?;
        self.head().validate()?;
        if let Some(prior) = &self.onset_prior {
            let max_units = self.format.max_units;
            prior.validate(self.format.unit_dim(), self.n_classes, max_units)?;
        }
        if self.n_classes == 0
            || self.noise_draws == 0
            || !self.input_noise.is_finite()
            || self.input_noise < 0.0
        {
            return Err(Error::Config(
                "n_classes and noise draws must be positive, input_noise >= 0".into(),
            ));
        }
        if self.core.max_seq_len < self.format.max_units + 1 {
            return Err(Error::Config(format!(
                "max_seq_len ({}) must cover the length token and {} units",
                self.core.max_seq_len, self.format.max_units
            )));
        }
        if let Some(stats) = &self.stats {
            let n = self.format.n_bins();
            if stats.mean.len() != n
                || stats.std.len() != n
                || stats.std.iter().any(|s| s.is_nan() || *s <= 0.0)
            {
                return Err(Error::Config(format!(
                    "stats need {n} means and {n} positive standard deviations"
                )));
            }
        }
        Ok(())
    }

    /// The bin statistics, which a trained model must have.
    pub fn stats(&self) -> Result<&BinStats> {
        self.stats
            .as_ref()
            .ok_or_else(|| Error::Config("the audio model has no bin statistics (stats)".into()))
    }

    /// Builds the model with fresh weights after validating the config.
    pub fn init(&self, device: &Device) -> Result<AudioModel> {
        self.validate()?;
        let normal = Initializer::Normal {
            mean: 0.0,
            std: INIT_STD,
        };
        let d = self.core.d_model;
        let (unit_dim, max_units) = (self.format.unit_dim(), self.format.max_units);
        Ok(AudioModel {
            class_embed: EmbeddingConfig::new(self.n_classes + 1, d)
                .with_initializer(normal.clone())
                .init(device),
            length_embed: EmbeddingConfig::new(max_units, d)
                .with_initializer(normal.clone())
                .init(device),
            frame_embed: LinearConfig::new(unit_dim, d)
                .with_initializer(normal.clone())
                .init(device),
            length_head: LinearConfig::new(d, max_units)
                .with_initializer(normal)
                .init(device),
            core: self.core.init(device),
            head: self.head().init(device),
            onset_prior: self.onset_prior.as_ref().and_then(|p| p.fitted.clone()),
            n_classes: self.n_classes,
            unit_dim,
            noise_draws: self.noise_draws,
            input_noise: self.input_noise,
            flow_time: self.flow_time,
        })
    }
}

/// Class and length embeddings + frame embedding + core + length head + flow head, and an
/// optional onset prior that draws each clip's length and first unit.
#[derive(Module, Debug)]
pub struct AudioModel {
    /// `[n_classes + 1, D]`; the last row is the "no label" token.
    class_embed: Embedding,
    /// `[max_units, D]`: row `n - 1` stands for a clip of `n` units.
    length_embed: Embedding,
    /// `[unit_dim, D]`
    frame_embed: Linear,
    /// `[D, max_units]`: logits of the clip length, read at the class position.
    length_head: Linear,
    core: Transformer,
    head: FlowHead,
    /// Draws each clip's length and first unit in place of the network (its lengths are
    /// validated to fit the length embedding).
    #[module(skip)]
    onset_prior: Option<OnsetPrior>,
    n_classes: usize,
    unit_dim: usize,
    noise_draws: usize,
    input_noise: f32,
    #[module(skip)]
    flow_time: FlowTime,
}

impl AudioModel {
    /// The label id meaning "no label".
    pub fn null_label(&self) -> usize {
        self.n_classes
    }

    /// The adapter, decoders and core as [`AudioParts`].
    fn parts(&self) -> AudioParts<'_> {
        AudioParts {
            core: &self.core,
            length_embed: &self.length_embed,
            frame_embed: &self.frame_embed,
            length_head: &self.length_head,
            head: &self.head,
            unit_dim: self.unit_dim,
            noise_draws: self.noise_draws,
            input_noise: self.input_noise,
            flow_time: self.flow_time,
        }
    }

    /// Flow-matching loss of the units plus the weighted length cross-entropy.
    ///
    /// # Shapes
    /// - `units`: `[B, N, unit_dim]`, clip `k` valid for its first `lengths[k]` units (the
    ///   rest is padding); `labels`: `[B]`; returns `[1]`.
    pub fn loss(&self, units: Tensor<3>, lengths: &[usize], labels: Tensor<1, Int>) -> Tensor<1> {
        let b = labels.dims()[0];
        let class = self.class_embed.forward(labels.reshape([b, 1])); // (B, 1, D)
        self.parts().loss(class, units, lengths)
    }

    /// Draws one clip's units per label: first its length from the class position (with an
    /// onset prior: its length and first unit from the prior, the clips of a class spread
    /// over its voices by [`spread_picks`]), then the units with a KV cache and
    /// classifier-free guidance as for images. Returns each clip's units,
    /// `[n_units * unit_dim]` row-major, `n_units` as drawn.
    pub fn generate(
        &self,
        labels: &[usize],
        options: &FlowGenerateOptions,
        device: &Device,
    ) -> Vec<Vec<f32>> {
        let picks = spread_picks(labels, options.seed);
        self.generate_picked(labels, &picks, options, device)
    }

    /// [`AudioModel::generate`] with each clip's place among its class's onset components
    /// given (see [`spread_picks`]), so a request drawn in several batches spreads its
    /// voices as one. Without an onset prior, `picks` go unused.
    ///
    /// # Panics
    /// If `picks` and `labels` differ in length.
    pub fn generate_picked(
        &self,
        labels: &[usize],
        picks: &[f32],
        options: &FlowGenerateOptions,
        device: &Device,
    ) -> Vec<Vec<f32>> {
        assert_eq!(picks.len(), labels.len(), "one pick per label");
        if labels.is_empty() {
            return Vec::new();
        }
        let ids = condition_ids(labels, self.null_label(), options.guidance != 1.0, device);
        let class = self.class_embed.forward(ids); // (rows, 1, D)
        let onsets = self
            .onset_prior
            .as_ref()
            .map(|prior| prior.draw_batch(labels, picks, device));
        self.parts()
            .generate(class, labels.len(), onsets.as_deref(), options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_ignores_padding_and_generation_respects_lengths() {
        padding_and_lengths(AudioModelConfig {
            input_noise: 0.0, // no draws that depend on the padded length
            ..AudioModelConfig::tiny()
        });
    }

    fn padding_and_lengths(config: AudioModelConfig) {
        let device = crate::default_device();
        let model = config.init(&device).unwrap();
        let u = config.format.unit_dim();
        let labels = || Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 3], [2]), &device);
        let _rng = crate::rng::lock_device_rng();
        let padded = Tensor::<3>::zeros([2, 5, u], &device);
        model.loss(padded, &[5, 2], labels()); // parameters initialise lazily, on first use
        crate::rng::seed(&device, 1);
        let padded = Tensor::<3>::zeros([2, 5, u], &device);
        let a = model.loss(padded, &[5, 2], labels()).into_scalar::<f32>();
        crate::rng::seed(&device, 1);
        let garbage = Tensor::cat(
            vec![
                Tensor::<3>::zeros([2, 5, u], &device),
                Tensor::<3>::ones([2, 2, u], &device) * 100.0,
            ],
            1,
        );
        // Same valid units; only the padding and its (never-fed) positions differ.
        let b = model.loss(garbage, &[5, 2], labels()).into_scalar::<f32>();
        assert!(a.is_finite() && a > 0.0);
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        assert!(model
            .loss(
                Tensor::zeros([1, 1, u], &device),
                &[1],
                labels().narrow(0, 0, 1)
            )
            .into_scalar::<f32>()
            .is_finite());
        for guidance in [1.0, 3.0] {
            let options = FlowGenerateOptions {
                guidance,
                steps: 2,
                ..FlowGenerateOptions::audio()
            };
            let clips = model.generate(&[0, 2, 1], &options, &device);
            assert_eq!(clips.len(), 3);
            for clip in clips {
                let n = clip.len() / u;
                assert!(clip.len() % u == 0 && (1..=config.format.max_units).contains(&n));
            }
        }
    }

    /// An onset prior fitted to clips whose first unit decides their length (all +1: 2
    /// units; all -1: 6 units): an untrained network then generates clips whose lengths and
    /// first units come in those pairs (give or take the prior's smoothing), where its own
    /// length head would draw any length.
    #[test]
    fn clips_start_as_the_onset_prior_draws() {
        use super::super::prior::Onset;
        let mut config = AudioModelConfig::tiny();
        let u = config.format.unit_dim();
        let onsets: Vec<Onset> = (0..60)
            .map(|i| match i % 2 {
                0 => Onset {
                    unit: vec![1.0; u],
                    length: 2,
                },
                _ => Onset {
                    unit: vec![-1.0; u],
                    length: 6,
                },
            })
            .collect();
        let labels: Vec<usize> = (0..60).map(|i| i % 3).collect();
        let prior = OnsetPriorConfig {
            components: 2,
            dims: 2,
            fitted: None,
        };
        let fitted = prior.fit(&onsets, &labels, &[], 3, 1).unwrap();
        config.onset_prior = Some(OnsetPriorConfig {
            fitted: Some(fitted),
            ..prior
        });
        let device = crate::default_device();
        let _rng = crate::rng::lock_device_rng();
        crate::rng::seed(&device, 4);
        let model = config.init(&device).unwrap();
        for guidance in [1.0, 2.0] {
            let options = FlowGenerateOptions {
                guidance,
                steps: 2,
                ..FlowGenerateOptions::audio()
            };
            let clips = model.generate(&[0; 32], &options, &device);
            let paired = clips
                .iter()
                .filter(|clip| {
                    let first = clip[..u].iter().sum::<f32>() / u as f32;
                    let n = clip.len() / u;
                    (first > 0.5 && n <= 3) || (first < -0.5 && n >= 5)
                })
                .count();
            let long = clips.iter().filter(|clip| clip.len() / u >= 5).count();
            assert_eq!(paired, 32, "every clip as long as its first unit says");
            let unconditional = model.generate(&[model.null_label(); 8], &options, &device);
            let from_prior = |clip: &Vec<f32>| clip.len() / u <= 3 || clip.len() / u >= 5;
            let kept = unconditional.iter().all(from_prior);
            assert!(kept, "unconditional clips take the prior's lengths too");
            assert!(
                (6..=26).contains(&long),
                "{long}/32 long clips: both kinds drawn"
            );
        }
    }

    #[test]
    fn configs_whose_context_cannot_hold_a_clip_are_rejected() {
        let mut config = AudioModelConfig::tiny();
        config.format.max_units = 63; // context 16
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("63 units"), "{err}");
    }
}
