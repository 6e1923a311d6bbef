//! The audio adapter and decoders with the core they run on, whichever model holds them (an
//! [`AudioModel`](super::AudioModel), or a joint model whose core other modalities share).
//!
//! ```text
//! input:  [condition prefix (P)] [length] [unit 0] ... [unit N-2]
//! output:        ... z(P-1)        z(P)     z(P+1) ...  z(P+N-1)
//!                    └─ length head  └─ flow head draws unit 0, 1, ...
//! ```
//!
//! With an onset prior (see [`super::prior`]) the length and unit 0 are given, not drawn.

use burn::nn::{Embedding, Linear};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::Distribution;

use super::prior::Onset;
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
    pub unit_dim: usize,
    pub noise_draws: usize,
    pub input_noise: f32,
    pub flow_time: FlowTime,
}

impl AudioParts<'_> {
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
        let mut parts = vec![
            prefix,
            self.length_embed
                .forward(length_ids.clone().reshape([b, 1])), // (B, 1, D)
        ];
        if n > 1 {
            let fed = units.clone().narrow(1, 0, n - 1); // (B, N-1, unit_dim)
            let fed = if self.input_noise > 0.0 {
                let noise = Distribution::Normal(0.0, self.input_noise as f64);
                fed.clone() + crate::rng::random_like(&fed, noise)
            } else {
                fed
            };
            parts.push(self.frame_embed.forward(fed));
        }
        let z = self.core.forward(Tensor::cat(parts, 1)); // (B, P+N, D)
        let d = z.dims()[2];
        let length_logits = self
            .length_head
            .forward(z.clone().narrow(1, p_len - 1, 1).reshape([b, d]));
        let length_loss = log_softmax(length_logits, 1)
            .gather(1, length_ids.reshape([b, 1]))
            .mean()
            .neg();
        let valid: Vec<i64> = (0..b)
            .flat_map(|k| (0..lengths[k]).map(move |i| (k * n + i) as i64))
            .collect();
        let rows = valid.len();
        let valid = Tensor::<1, Int>::from_data(TensorData::new(valid, [rows]), &device);
        let x0 = units.reshape([b * n, u]).select(0, valid.clone());
        let z = z.narrow(1, p_len, n).reshape([b * n, d]).select(0, valid);
        self.head.loss(x0, z, self.noise_draws, self.flow_time) + length_loss * LENGTH_LOSS_WEIGHT
    }

    /// Draws `n_clips` clips after `prefix`: each length from the prefix's last position,
    /// then the units with a KV cache (with guidance, `prefix` holds the conditional rows,
    /// then as many unconditional ones). With `onsets` (one per clip, from an onset prior),
    /// each clip's length and first unit are given and the network draws the rest. Returns
    /// each clip's units, `[n_units * unit_dim]` row-major, `n_units` as drawn.
    ///
    /// # Shapes
    /// - `prefix`: `[rows, P, D]`.
    pub fn generate(
        &self,
        prefix: Tensor<3>,
        n_clips: usize,
        onsets: Option<&[Onset]>,
        options: &FlowGenerateOptions,
    ) -> Vec<Vec<f32>> {
        let [rows, p_len, d] = prefix.dims();
        let (b, guided, device) = (n_clips, options.guidance != 1.0, prefix.device());
        let lengths: Vec<i64> = match onsets {
            Some(onsets) => onsets.iter().map(|o| o.length as i64 - 1).collect(),
            None => {
                // The prefix goes through the core twice: here for the lengths, and in the
                // cached prefix below with the rows reordered (a cache cannot reorder).
                let z = self.core.forward(prefix.clone()).narrow(1, p_len - 1, 1);
                let logits = self
                    .length_head
                    .forward(z.reshape([rows, d]).narrow(0, 0, b));
                sample_categorical(logits)
            }
        }; // units - 1

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
        let prefix = Tensor::cat(
            vec![
                prefix.select(0, row_order),
                self.length_embed.forward(length_ids),
            ],
            1,
        ); // (rows, P+1, D): condition, length token
        let mut cache = self.core.new_cache();
        let mut z = self
            .core
            .forward_cached(prefix, &mut cache)
            .narrow(1, p_len, 1);
        let mut clips = vec![Vec::new(); b];
        let mut sorted: Vec<usize> = order.iter().map(|&r| lengths[r] as usize + 1).collect();
        if let Some(onsets) = onsets {
            // Feed the given first units; the network draws from the second unit on.
            let mut firsts: Vec<f32> = order.iter().flat_map(|&r| onsets[r].unit.clone()).collect();
            if guided {
                firsts.extend_from_within(..);
            }
            let fed =
                Tensor::<3>::from_data(TensorData::new(firsts, [rows, 1, self.unit_dim]), &device);
            z = self
                .core
                .forward_cached(self.frame_embed.forward(fed), &mut cache);
            for (r, onset) in onsets.iter().enumerate() {
                clips[r] = onset.unit.clone();
            }
            sorted.iter_mut().for_each(|n| *n -= 1);
            if sorted[0] == 0 {
                return clips;
            }
        }
        let sampler = UnitSampler {
            core: self.core,
            head: self.head,
            embed: self.frame_embed,
            unit_dim: self.unit_dim,
        };
        let units = sampler.sample(z, &mut cache, &sorted, options);
        let values: Vec<f32> = units.into_data().try_into_vec().expect("f32 units");
        let per_clip = sorted[0] * self.unit_dim;
        for ((drawn, &r), &n) in values.chunks_exact(per_clip).zip(&order).zip(&sorted) {
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
    let u = crate::rng::random_like(&logits, Distribution::Uniform(1e-6, 1.0 - 1e-6));
    let gumbel = u.log().neg().log().neg();
    (logits + gumbel)
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_into_vec()
        .expect("int ids")
}
