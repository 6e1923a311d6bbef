//! The shared Transformer core: a decoder-only, pre-norm Transformer that maps `[B,T,D]` to
//! `[B,T,D]` and knows nothing of tokens, pixels or samples.
//!
//! Follows GPT-2 / nanoGPT (Radford et al. 2019; Karpathy's `model.py`) with two modern options:
//! rotary positions (RoFormer, Su et al. 2021) and a squared-ReLU MLP (Primer, So et al. 2021),
//! which is far cheaper than exact GELU on burn's CPU backend.
//!
//! Weights (this module) and run state ([`KvCache`]) are kept apart, as in llama2.c; the run
//! state may hold copies of weights in the layout decoding reads them in.

mod attention;
mod block;
mod cache;
mod config;
mod fused;
mod matvec;
mod rope;
mod spin;

pub use cache::KvCache;
pub use config::{Activation, Positions, TransformerConfig};
pub(crate) use fused::{cross_entropy_sum, forward_linear, silu, sum_of_squares, ConditionedMlp};

use std::sync::Arc;

use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use block::Block;
use rope::Rope;

/// Standard deviation of every weight at initialisation (GPT-2's choice).
pub(crate) const INIT_STD: f64 = 0.02;

/// The decoder-only Transformer shared by every modality.
#[derive(Module, Debug)]
pub struct Transformer {
    /// Learned absolute positions (`Positions::Learned` only).
    pos_embed: Option<Embedding>,
    blocks: Vec<Block>,
    norm_out: LayerNorm,
    /// Rotary tables (`Positions::Rope` only); constants, not saved.
    rope: Option<Rope>,
    dropout: f64,
    max_seq_len: usize,
}

impl TransformerConfig {
    /// Builds the core with freshly initialised weights. Validate the config first.
    pub fn init(&self, device: &Device) -> Transformer {
        let learned = self.positions == Positions::Learned;
        Transformer {
            pos_embed: learned.then(|| {
                EmbeddingConfig::new(self.max_seq_len, self.d_model)
                    .with_initializer(Initializer::Normal {
                        mean: 0.0,
                        std: INIT_STD,
                    })
                    .init(device)
            }),
            blocks: (0..self.n_layers)
                .map(|_| self.init_block(device))
                .collect(),
            norm_out: LayerNormConfig::new(self.d_model)
                .with_bias(self.bias)
                .init(device),
            rope: (!learned)
                .then(|| Rope::new(self.head_dim(), self.max_seq_len, self.rope_theta, device)),
            dropout: self.dropout,
            max_seq_len: self.max_seq_len,
        }
    }
}

impl Transformer {
    /// Full-sequence forward pass (training and scoring).
    ///
    /// # Shapes
    /// - `x`: `[B, T, D]` with `T <= max_seq_len`
    /// - returns `[B, T, D]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.run(x, None)
    }

    /// Forward pass that appends this call's keys and values to `cache` and attends to
    /// everything cached before; positions continue from `cache.len()`.
    ///
    /// # Shapes
    /// - `x`: `[B, T, D]` with `cache.len() + T <= max_seq_len`
    /// - returns `[B, T, D]`
    pub fn forward_cached(&self, x: Tensor<3>, cache: &mut KvCache) -> Tensor<3> {
        self.run(x, Some(cache))
    }

    /// The longest sequence (cached plus new positions) this core accepts.
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// An empty cache sized for this core.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.blocks.len())
    }

    fn run(&self, x: Tensor<3>, mut cache: Option<&mut KvCache>) -> Tensor<3> {
        let start = cache.as_ref().map_or(0, |c| c.len());
        let [_, t, _] = x.dims();
        let mut x = match &self.pos_embed {
            Some(pos) => {
                let positions =
                    Tensor::<1, Int>::arange(start as i64..(start + t) as i64, &x.device());
                x + pos.forward(positions.unsqueeze::<2>()) // [1, T, D] broadcasts over B
            }
            None => x,
        };
        x = dropout(x, self.dropout);
        if let Some(cache) = cache.as_deref_mut() {
            if let Some(y) = self.decode_row(&x, cache) {
                return y;
            }
        }
        // Training on the CPU takes the fused block.
        let device = x.device();
        let fusable = cache.is_none() && device.is_autodiff() && crate::device::is_cpu(&device);
        let rotary = match &self.rope {
            Some(rope) if fusable => Some(Arc::new(rope.fused_tables(t))),
            _ => None,
        };
        for (i, block) in self.blocks.iter().enumerate() {
            if let Some(y) = fusable
                .then(|| block.fused_forward(&x, self.dropout, rotary.as_ref()))
                .flatten()
            {
                x = y;
                continue;
            }
            let layer_cache = cache.as_deref_mut().map(|c| c.layer(i));
            x = block.forward(x, self.rope.as_ref(), layer_cache, start, self.dropout);
        }
        if let Some(c) = cache {
            c.advance(t);
        }
        let (gamma, beta) = (self.norm_out.gamma.val(), self.norm_out.beta.as_ref());
        match fused::layer_norm(&x, &gamma, beta.map(|b| b.val()).as_ref()) {
            Some(y) => y, // training on the CPU: one fused node
            None => self.norm_out.forward(x),
        }
    }
}

impl Transformer {
    /// One decoding step of one sequence on the CPU, run on raw rows: burn's per-op overhead
    /// was about a quarter of a nanoGPT-big token. `None` (nothing changed) for several rows,
    /// autodiff or another backend.
    ///
    /// # Shapes
    /// - `x`: `[1, 1, D]`, positions already added; returns `[1, 1, D]`.
    fn decode_row(&self, x: &Tensor<3>, cache: &mut KvCache) -> Option<Tensor<3>> {
        let [b, t, d] = x.dims();
        if b * t != 1 || x.device().is_autodiff() {
            return None;
        }
        let mut row = matvec::row_values(x.clone())?;
        let pos = cache.len();
        for (i, block) in self.blocks.iter().enumerate() {
            let done = block.forward_row(&mut row, self.rope.as_ref(), cache.layer(i), pos);
            if done.is_none() {
                assert_eq!(i, 0, "block {i} is on another backend than block 0");
                return None;
            }
        }
        cache.advance(1);
        let y = matvec::layer_norm_row(&self.norm_out, &row).expect("the blocks' backend");
        Some(Tensor::from_data(
            TensorData::new(y, [1, 1, d]),
            &x.device(),
        ))
    }
}

/// Inverted dropout, active only when the tensor is tracked by autodiff (i.e. while training).
pub(crate) fn dropout<const N: usize>(x: Tensor<N>, prob: f64) -> Tensor<N> {
    if prob == 0.0 || !x.device().is_autodiff() {
        return x;
    }
    let keep = crate::rng::random_like(&x, Distribution::Bernoulli(1.0 - prob));
    x * keep / (1.0 - prob)
}

#[cfg(test)]
mod tests;
