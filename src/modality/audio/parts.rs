//! The audio adapter and decoders with the core they run on, whichever model holds them (an
//! [`AudioModel`](super::AudioModel), or a joint model whose core other modalities share).
//!
//! ```text
//! input:  [condition prefix (P)] [length] [unit 0] ... [unit N-2]
//! output:        ... z(P-1)        z(P)     z(P+1) ...  z(P+N-1)
//!                    └─ length head  └─ flow head draws unit 0, 1, ...
//! ```
//!
//! With an onset head the first unit comes before the length, so the length agrees with the
//! voice the first unit starts (a real first unit fixes the rest of the clip: with it, free
//! running reaches near the real clips' Fréchet distance):
//!
//! ```text
//! input:  [condition prefix (P)] [unit 0] [length] [unit 1] ... [unit N-2]
//! output:        ... z(P-1)        z(P)     z(P+1)   z(P+2) ...  z(P+N-1)
//!                    └─ onset head └─ length head └─ flow head draws unit 1, 2, ...
//! ```

use burn::nn::{Embedding, Linear};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::Distribution;

use crate::core::Transformer;
use crate::modality::continuous::{FlowGenerateOptions, UnitSampler};
use crate::modality::flow::{FlowHead, FlowTime};

/// Weight of the clip-length cross-entropy next to the flow loss.
const LENGTH_LOSS_WEIGHT: f64 = 0.1;

/// Borrowed audio modules and their settings.
pub(crate) struct AudioParts<'a> {
    pub core: &'a Transformer,
    pub length_embed: &'a Embedding,
    pub frame_embed: &'a Linear,
    pub length_head: &'a Linear,
    pub head: &'a FlowHead,
    /// Draws the first unit, before the length token; `None`: the length comes first.
    pub onset: Option<&'a FlowHead>,
    /// Noise/time draws per clip for the onset head's loss.
    pub onset_draws: usize,
    pub unit_dim: usize,
    pub noise_draws: usize,
    pub input_noise: f32,
    pub flow_time: FlowTime,
}

impl AudioParts<'_> {
    /// Units that come before the length token: 1 with an onset head, else 0.
    fn units_before_length(&self) -> usize {
        self.onset.is_some() as usize
    }

    /// Flow-matching loss of the units plus the weighted length cross-entropy, after `prefix`.
    ///
    /// # Shapes
    /// - `prefix`: `[B, P, D]`; `units`: `[B, N, unit_dim]`, clip `k` valid for its first
    ///   `lengths[k]` units (the rest is padding); returns `[1]`.
    pub fn loss(&self, prefix: Tensor<3>, units: Tensor<3>, lengths: &[usize]) -> Tensor<1> {
        let [b, n, u] = units.dims();
        let p_len = prefix.dims()[1];
        let device = units.device();
        let length_ids: Vec<i64> = lengths.iter().map(|&l| l as i64 - 1).collect();
        let length_ids = Tensor::<1, Int>::from_data(TensorData::new(length_ids, [b]), &device);
        let onset = self.units_before_length();
        // With an onset head the first unit is fed even when it is the only one: the length is
        // read at its output.
        let fed_count = (n - 1).max(onset);
        let fed = (fed_count > 0).then(|| {
            let fed = units.clone().narrow(1, 0, fed_count); // (B, fed_count, unit_dim)
            let fed = if self.input_noise > 0.0 {
                let noise = Distribution::Normal(0.0, self.input_noise as f64);
                fed.clone() + fed.random_like(noise)
            } else {
                fed
            };
            self.frame_embed.forward(fed) // (B, fed_count, D)
        });
        let mut parts = vec![prefix];
        if onset > 0 {
            parts.extend(fed.clone().map(|fed| fed.narrow(1, 0, onset)));
        }
        parts.push(
            self.length_embed
                .forward(length_ids.clone().reshape([b, 1])), // (B, 1, D)
        );
        if fed_count > onset {
            parts.extend(fed.map(|fed| fed.narrow(1, onset, fed_count - onset)));
        }
        let z = self.core.forward(Tensor::cat(parts, 1)); // (B, P+fed_count+1, D)
        let d = z.dims()[2];
        let length_logits = self
            .length_head
            .forward(z.clone().narrow(1, p_len + onset - 1, 1).reshape([b, d]));
        let length_loss = log_softmax(length_logits, 1)
            .gather(1, length_ids.reshape([b, 1]))
            .mean()
            .neg();
        // Unit i >= onset is drawn from the output at P + i, after the length token.
        let valid: Vec<i64> = (0..b)
            .flat_map(|k| (onset..lengths[k]).map(move |i| (k * n + i) as i64))
            .collect();
        let rows = valid.len();
        let mut loss = length_loss * LENGTH_LOSS_WEIGHT;
        if rows > 0 {
            let valid = Tensor::<1, Int>::from_data(TensorData::new(valid, [rows]), &device);
            let x0 = units.clone().reshape([b * n, u]).select(0, valid.clone());
            let z_units = z
                .clone()
                .narrow(1, p_len, n)
                .reshape([b * n, d])
                .select(0, valid);
            loss = loss
                + self
                    .head
                    .loss(x0, z_units, self.noise_draws, self.flow_time);
        }
        if let Some(onset_head) = self.onset {
            let x0 = units.narrow(1, 0, 1).reshape([b, u]);
            let z_first = z.narrow(1, p_len - 1, 1).reshape([b, d]);
            loss = loss + onset_head.loss(x0, z_first, self.onset_draws, self.flow_time);
        }
        loss
    }

    /// Draws `n_clips` clips after `prefix`: the first unit with the onset head if there is
    /// one, then each length from the last position so far, then the units with a KV cache
    /// (with guidance, `prefix` holds the conditional rows, then as many unconditional ones).
    /// Returns each clip's units, `[n_units * unit_dim]` row-major, `n_units` as drawn.
    ///
    /// # Shapes
    /// - `prefix`: `[rows, P, D]`.
    pub fn generate(
        &self,
        prefix: Tensor<3>,
        n_clips: usize,
        options: &FlowGenerateOptions,
    ) -> Vec<Vec<f32>> {
        let [rows, p_len, d] = prefix.dims();
        let (b, guided, device) = (n_clips, options.guidance != 1.0, prefix.device());
        let (steps, temperature) = (options.steps, options.temperature);
        // With an onset head: the first unit, drawn before the length.
        let first = self.onset.map(|onset_head| {
            let z = self.core.forward(prefix.clone()).narrow(1, p_len - 1, 1);
            let z = z.reshape([rows, d]);
            let guide = guided.then(|| (z.clone().narrow(0, b, b), options.guidance));
            onset_head.sample(z.narrow(0, 0, b), guide, steps, self.unit_dim, temperature)
        }); // (B, unit_dim)
        let context = match &first {
            Some(unit) => {
                let fed = match guided {
                    true => Tensor::cat(vec![unit.clone(), unit.clone()], 0),
                    false => unit.clone(),
                };
                let fed = self
                    .frame_embed
                    .forward(fed.reshape([rows, 1, self.unit_dim]));
                Tensor::cat(vec![prefix, fed], 1)
            }
            None => prefix,
        }; // (rows, C, D): the condition prefix, then the first unit if drawn
        let c_len = context.dims()[1];
        // The context goes through the core twice: here for the lengths, and in the cached
        // context below with the rows reordered (a cache cannot reorder).
        let z = self.core.forward(context.clone()).narrow(1, c_len - 1, 1);
        let logits = self
            .length_head
            .forward(z.reshape([rows, d]).narrow(0, 0, b));
        let lengths = sample_categorical(logits); // units - 1

        // Longest clips first, so the head only draws for the leading, unfinished rows.
        let mut order: Vec<usize> = (0..b).collect();
        order.sort_by_key(|&r| std::cmp::Reverse(lengths[r]));
        let mut row_order: Vec<i64> = order.iter().map(|&r| r as i64).collect();
        let mut length_ids: Vec<i64> = order.iter().map(|&r| lengths[r]).collect();
        if guided {
            row_order.extend(order.iter().map(|&r| (r + b) as i64));
            length_ids.extend_from_within(..);
        }
        let row_order = Tensor::<1, Int>::from_data(TensorData::new(row_order, [rows]), &device);
        let length_ids =
            Tensor::<2, Int>::from_data(TensorData::new(length_ids, [rows, 1]), &device);
        let context = Tensor::cat(
            vec![
                context.select(0, row_order),
                self.length_embed.forward(length_ids),
            ],
            1,
        ); // (rows, C+1, D)
        let mut cache = self.core.new_cache();
        let z = self
            .core
            .forward_cached(context, &mut cache)
            .narrow(1, c_len, 1);
        let mut clips: Vec<Vec<f32>> = match first {
            Some(unit) => {
                let values: Vec<f32> = unit.into_data().try_into_vec().expect("f32 units");
                values
                    .chunks_exact(self.unit_dim)
                    .map(<[f32]>::to_vec)
                    .collect()
            }
            None => vec![Vec::new(); b],
        };
        let drawn_first = self.units_before_length();
        let rest: Vec<usize> = order
            .iter()
            .map(|&r| lengths[r] as usize + 1 - drawn_first)
            .collect();
        if rest[0] == 0 {
            return clips;
        }
        let sampler = UnitSampler {
            core: self.core,
            head: self.head,
            embed: self.frame_embed,
            unit_dim: self.unit_dim,
        };
        let units = sampler.sample(z, &mut cache, &rest, options);
        let values: Vec<f32> = units.into_data().try_into_vec().expect("f32 units");
        let per_clip = rest[0] * self.unit_dim;
        for ((drawn, &r), &n) in values.chunks_exact(per_clip).zip(&order).zip(&rest) {
            clips[r].extend_from_slice(&drawn[..n * self.unit_dim]);
        }
        clips
    }
}

/// One draw per row of `logits` (Gumbel-max with the device's seeded RNG).
///
/// # Shapes
/// - `logits`: `[B, K]`; returns `B` class ids.
fn sample_categorical(logits: Tensor<2>) -> Vec<i64> {
    let u = logits.random_like(Distribution::Uniform(1e-6, 1.0 - 1e-6));
    let gumbel = u.log().neg().log().neg();
    (logits + gumbel)
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_into_vec()
        .expect("int ids")
}
