//! The sampling loop shared by every continuous modality (image patches, audio frames): after
//! the condition prefix, the core's output at the last position conditions the flow head,
//! which draws the next unit; the unit is embedded and fed back through the KV cache.
//!
//! With classifier-free guidance the conditional and unconditional sequences run as one
//! batch: rows `0..B` carry the condition, rows `B..2B` the "no condition" token.

use burn::nn::Linear;
use burn::prelude::*;

use super::flow::FlowHead;
use crate::core::{KvCache, Transformer};
use crate::{Error, Result};

/// The pieces of a model that draw continuous units one position at a time.
pub struct UnitSampler<'a> {
    /// The shared core.
    pub core: &'a Transformer,
    /// The decoder of one unit.
    pub head: &'a FlowHead,
    /// The adapter that embeds a unit to feed it back.
    pub embed: &'a Linear,
    /// Values per unit.
    pub unit_dim: usize,
}

impl UnitSampler<'_> {
    /// Draws `lengths[r]` units for row `r` after a prefix whose last output is `z` (already
    /// in `cache`). Rows must come longest first: the head then draws only for the leading
    /// rows still unfinished, and the finished ones are fed zeros. `guidance != 1` expects
    /// `z` to hold the unconditional rows after the conditional ones. Units are returned
    /// unclamped; each is fed back exactly as drawn.
    ///
    /// # Shapes
    /// - `z`: `[B, 1, D]`, or `[2B, 1, D]` with guidance; `lengths`: `B` counts;
    ///   returns `[B, max(lengths), unit_dim]`, zero past each row's length.
    pub fn sample(
        &self,
        mut z: Tensor<3>,
        cache: &mut KvCache,
        lengths: &[usize],
        options: &FlowGenerateOptions,
    ) -> Tensor<3> {
        assert!(
            lengths.windows(2).all(|w| w[0] >= w[1]),
            "rows must come longest first"
        );
        let (guidance, steps, temperature) = (options.guidance, options.steps, options.temperature);
        let guided = guidance != 1.0;
        let [rows, _, d] = z.dims();
        let b = lengths.len();
        assert_eq!(rows, if guided { 2 * b } else { b }, "one length per row");
        let n_units = lengths.first().copied().unwrap_or(0);
        let mut units = Vec::with_capacity(n_units);
        for i in 0..n_units {
            let active = lengths.iter().take_while(|&&l| l > i).count();
            let z_last = z.reshape([rows, d]);
            let z_cond = z_last.clone().narrow(0, 0, active);
            let guide = guided.then(|| (z_last.narrow(0, b, active), guidance));
            let mut unit = self
                .head
                .sample(z_cond, guide, steps, self.unit_dim, temperature); // (active, unit_dim)
            if active < b {
                let done = Tensor::zeros([b - active, self.unit_dim], &unit.device());
                unit = Tensor::cat(vec![unit, done], 0);
            }
            units.push(unit.clone().reshape([b, 1, self.unit_dim]));
            if i + 1 == n_units {
                break;
            }
            let fed = if guided {
                Tensor::cat(vec![unit.clone(), unit], 0)
            } else {
                unit
            };
            let x = self.embed.forward(fed.reshape([rows, 1, self.unit_dim]));
            z = self.core.forward_cached(x, cache);
        }
        Tensor::cat(units, 1)
    }
}

/// Each label's condition id: the label, or `n_classes` ("no label") for `None`. A label
/// outside the classes is an error that names it.
pub fn label_ids(labels: &[Option<usize>], n_classes: usize) -> Result<Vec<usize>> {
    if let Some(bad) = labels.iter().flatten().find(|&&l| l >= n_classes) {
        return Err(Error::Input(format!(
            "label {bad} is outside the model's {n_classes} classes (0..{n_classes})"
        )));
    }
    Ok(labels.iter().map(|l| l.unwrap_or(n_classes)).collect())
}

/// Condition ids for one sampling batch: `labels`, then as many `null` ids when guided.
///
/// # Shapes
/// - returns `[B, 1]` or `[2B, 1]`.
pub fn condition_ids(
    labels: &[usize],
    null: usize,
    guided: bool,
    device: &Device,
) -> Tensor<2, Int> {
    let mut ids: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    if guided {
        ids.extend(std::iter::repeat_n(null as i64, labels.len()));
    }
    let rows = ids.len();
    Tensor::from_data(TensorData::new(ids, [rows, 1]), device)
}

/// How to draw images or clips.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowGenerateOptions {
    /// Classifier-free guidance scale; 1 disables guidance.
    pub guidance: f32,
    /// Euler steps of the flow head per unit.
    pub steps: usize,
    /// Scale of the flow head's starting noise (1: as trained; lower: cleaner, less varied).
    pub temperature: f32,
    /// Seed of the sampling noise.
    pub seed: u64,
    /// Samples generated per forward batch.
    pub batch_size: usize,
}

impl FlowGenerateOptions {
    /// Image defaults: guidance 1.5, 16 steps. On the shipped MNIST model, guidance 1.25 /
    /// 1.5 / 2 give 98.6% / 99.7% / 99.9% conditional accuracy at 0.65x / 1.15x / 2.2x the
    /// real images' Fréchet distance: beyond 1.5, guidance buys accuracy with uniform digits.
    pub fn image() -> Self {
        Self {
            guidance: 1.5,
            steps: 16,
            temperature: 1.0,
            seed: 0,
            batch_size: 100,
        }
    }

    /// Audio defaults: guidance 2, 16 steps, temperature 0.7, 50 clips a batch. On the
    /// shipped FSDD model (300 clips, means over seeds): guidance 2 scores 95% conditional
    /// accuracy at Fréchet distance 76, guidance 1.5 92% at 71. Measured before its onset
    /// prior: guidance 3 bought accuracy with uniform, noisier clips, 16 Euler steps scored as
    /// 25 at 1.6x the speed, and temperature 1.0 lost 10 points of accuracy.
    pub fn audio() -> Self {
        Self {
            guidance: 2.0,
            steps: 16,
            temperature: 0.7,
            seed: 0,
            batch_size: 50,
        }
    }

    /// Checks every option makes sense, naming the first that does not.
    pub fn validate(&self) -> Result<()> {
        let problem = if self.steps == 0 {
            "steps must be positive, got 0".to_string()
        } else if self.batch_size == 0 {
            "batch_size must be positive, got 0".to_string()
        } else if !self.guidance.is_finite() {
            format!("guidance must be a finite number, got {}", self.guidance)
        } else if !(self.temperature.is_finite() && self.temperature > 0.0) {
            format!(
                "temperature must be positive and finite, got {}",
                self.temperature
            )
        } else {
            return Ok(());
        };
        Err(Error::Config(problem))
    }

    /// Runs `generate` on the condition ids of `labels` (`None`: unconditional) in batches,
    /// with the device RNG seeded once and held for the whole request, after checking the
    /// labels fit a model of `n_classes` classes and the options make sense.
    pub fn run_batched<T>(
        &self,
        labels: &[Option<usize>],
        n_classes: usize,
        mut generate: impl FnMut(&[usize], &Device) -> Vec<T>,
    ) -> Result<Vec<T>> {
        let ids = label_ids(labels, n_classes)?;
        self.run_chunks(&ids, |chunk, device| Ok(generate(chunk, device)))
    }

    /// Runs `generate` on `items` in chunks of `batch_size`, with the device RNG seeded once
    /// and held for the whole request, after checking the options make sense.
    pub fn run_chunks<I, T>(
        &self,
        items: &[I],
        mut generate: impl FnMut(&[I], &Device) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        self.validate()?;
        let device = crate::default_device();
        let _rng = crate::rng::lock_device_rng();
        crate::rng::seed(&device, self.seed);
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(self.batch_size) {
            out.extend(generate(chunk, &device)?);
        }
        Ok(out)
    }
}
