//! Causal multi-head self-attention with a fused q/k/v projection and an optional KV cache.
//!
//! Under autodiff the scores are computed by hand (`softmax(QKᵀ/√hd)V`), which burn 0.22
//! differentiates faster than its fused op; without autodiff (scoring, batched generation) the
//! fused `attention` op is about 3x faster on the CPU backend (see BURN_NOTES.md, section 3).
//! Sequences decoding one position each on the CPU attend over their cache in place: one
//! sequence on raw rows ([`Attention::forward_row`]), a batch through [`Attention::forward`].

use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::cache::LayerCache;
use super::fused::forward_linear;
use super::matvec::linear_row;
use super::rope::Rope;
use super::{dropout, TransformerConfig, INIT_STD};

/// Causal self-attention.
#[derive(Module, Debug)]
pub struct Attention {
    /// `[D, 3D]`: queries, keys and values in one matmul.
    qkv: Linear,
    /// `[D, D]`: output projection back into the residual stream.
    proj: Linear,
    n_heads: usize,
    /// Longest sequence: the capacity of an in-place decoding cache.
    max_seq_len: usize,
}

impl Attention {
    pub fn new(config: &TransformerConfig, device: &Device) -> Self {
        let d = config.d_model;
        // GPT-2: residual projections get a smaller init so the stream's variance stays flat.
        let proj_std = INIT_STD / (2.0 * config.n_layers as f64).sqrt();
        let linear = |d_out, std| {
            LinearConfig::new(d, d_out)
                .with_bias(config.bias)
                .with_initializer(Initializer::Normal { mean: 0.0, std })
                .init(device)
        };
        Self {
            qkv: linear(3 * d, INIT_STD),
            proj: linear(d, proj_std),
            n_heads: config.n_heads,
            max_seq_len: config.max_seq_len,
        }
    }

    /// The q/k/v projection, the output projection and the number of heads.
    pub(super) fn parts(&self) -> (&Linear, &Linear, usize) {
        (&self.qkv, &self.proj, self.n_heads)
    }

    /// # Shapes
    /// - `x`: `[B, T, D]`; returns `[B, T, D]`.
    /// - `start`: position of `x`'s first element (the cache length when cached).
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: Option<&Rope>,
        cache: Option<&mut LayerCache>,
        start: usize,
        dropout_prob: f64,
    ) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let (h, hd) = (self.n_heads, d / self.n_heads);
        let heads = |x: Tensor<3>| x.reshape([b, t, h, hd]).swap_dims(1, 2); // (B, H, T, hd)
        let mut qkv = forward_linear(&self.qkv, x)
            .chunk(3, 2)
            .into_iter()
            .map(heads);
        let (mut q, mut k, v) = (
            qkv.next().unwrap(),
            qkv.next().unwrap(),
            qkv.next().unwrap(),
        );
        if let Some(rope) = rope {
            q = rope.apply(q, start);
            k = rope.apply(k, start);
        }
        // (One sequence decoding one position on the CPU takes `forward_row` instead.)
        let (k, v) = match cache {
            Some(cache) if t == 1 && is_plain_cpu_f32(&q) => {
                let y = step_on_host(cache, [q, k, v], self.max_seq_len);
                let y = y.swap_dims(1, 2).reshape([b, t, d]); // (B, 1, D)
                return dropout(forward_linear(&self.proj, y), dropout_prob);
            }
            Some(cache) => cache.append(k, v), // (B, H, S + T, hd)
            None => (k, v),
        };
        let y = if q.device().is_autodiff() {
            manual_attention(q, k, v, dropout_prob)
        } else {
            fused_attention(q, k, v)
        };
        let y = y.swap_dims(1, 2).reshape([b, t, d]); // (B, T, D)
        dropout(forward_linear(&self.proj, y), dropout_prob)
    }
}

impl Attention {
    /// One decoding step of one sequence on raw rows: `x` is `[D]` (already normalised);
    /// returns the attention output `[D]`, or `None` off the CPU backend (known from the
    /// first parameter read, before `cache` changes).
    pub(super) fn forward_row(
        &self,
        x: &[f32],
        rope: Option<&Rope>,
        cache: &mut LayerCache,
        pos: usize,
    ) -> Option<Vec<f32>> {
        let mut qkv = linear_row(&self.qkv, x, cache)?;
        let d = x.len();
        if let Some(rope) = rope {
            // q and k are adjacent `[H, hd]` rows: one pass rotates both.
            rope.apply_row(&mut qkv[..2 * d], d / self.n_heads, pos)?;
        }
        let (q, kv) = qkv.split_at(d);
        let (k, v) = kv.split_at(d);
        let y = cache.attend_one(q, k, v, self.n_heads, self.max_seq_len);
        Some(linear_row(&self.proj, &y, cache).expect("proj is on qkv's backend"))
    }
}

/// True for an f32 tensor of the plain (not autodiff) CPU backend.
fn is_plain_cpu_f32(t: &Tensor<4>) -> bool {
    let device = t.device();
    !device.is_autodiff() && crate::device::is_cpu(&device) && t.dtype() == burn::tensor::DType::F32
}

/// One decoding step of a batch of sequences on the CPU: appends `k` and `v` to the cache's
/// plain buffers in place and attends over them, instead of copying the whole cache into new
/// tensors each step.
///
/// # Shapes
/// - `q`, `k`, `v`: `[B, H, 1, hd]`; returns `[B, H, 1, hd]`.
fn step_on_host(cache: &mut LayerCache, [q, k, v]: [Tensor<4>; 3], capacity: usize) -> Tensor<4> {
    let dims = q.dims();
    let device = q.device();
    let values = |t: Tensor<4>| t.into_data().try_into_vec::<f32>().expect("f32 (checked)");
    let y = cache.attend_one(
        &values(q),
        &values(k),
        &values(v),
        dims[0] * dims[1],
        capacity,
    );
    Tensor::from_data(TensorData::new(y, dims), &device)
}

/// Boolean mask, true where query `i` (of `t_q` newest positions) must not see key `j`.
///
/// # Shapes
/// - returns `[t_q, t_k]`
pub fn causal_mask(t_q: usize, t_k: usize, device: &Device) -> Tensor<2, Bool> {
    // Query i sits at absolute position (t_k - t_q + i) and sees keys 0..=that position.
    Tensor::<2, Bool>::tril_mask([t_q, t_k], (t_k - t_q) as i64, device)
}

/// # Shapes
/// - `q`: `[B, H, T, hd]`, `k`/`v`: `[B, H, S, hd]`; returns `[B, H, T, hd]`.
fn manual_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, dropout_prob: f64) -> Tensor<4> {
    let [b, h, t_q, hd] = q.dims();
    let t_k = k.dims()[2];
    let scores = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt(); // (B, H, T, S)
    let mask = causal_mask(t_q, t_k, &scores.device())
        .reshape([1, 1, t_q, t_k])
        .expand([b, h, t_q, t_k]);
    let weights = softmax(scores.mask_fill(mask, f32::NEG_INFINITY), 3);
    dropout(weights, dropout_prob).matmul(v)
}

/// # Shapes
/// - `q`: `[B, H, T, hd]`, `k`/`v`: `[B, H, S, hd]`; returns `[B, H, T, hd]`.
fn fused_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let [b, h, t_q, _] = q.dims();
    let t_k = k.dims()[2];
    let options = |is_causal| AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal,
    };
    if t_q == 1 {
        attention(q, k, v, None, None, options(false)) // one new position sees everything
    } else if t_q == t_k {
        attention(q, k, v, None, None, options(true))
    } else {
        // A chunk appended to a non-empty cache: spell the offset mask out.
        let mask = causal_mask(t_q, t_k, &q.device())
            .reshape([1, 1, t_q, t_k])
            .expand([b, h, t_q, t_k]);
        attention(q, k, v, Some(mask), None, options(false))
    }
}
