//! One pre-norm Transformer block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.

use std::sync::Arc;

use burn::module::Param;
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, gelu_approximate, relu};

use super::attention::Attention;
use super::cache::LayerCache;
use super::fused::{self, forward_linear, tracked, BlockInputs, Rotary, Tracked};
use super::matvec::{add_to, layer_norm_row, linear_row};
use super::rope::Rope;
use super::{dropout, Activation, TransformerConfig, INIT_STD};

/// A pre-norm block; field names are the checkpoint keys.
#[derive(Module, Debug)]
pub struct Block {
    norm_attn: LayerNorm,
    attn: Attention,
    norm_mlp: LayerNorm,
    mlp: Mlp,
}

/// The position-wise feed-forward network `fc_out(act(fc_in(x)))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[D, F]`
    fc_in: Linear,
    /// `[F, D]`
    fc_out: Linear,
    #[module(skip)]
    activation: Activation,
}

impl TransformerConfig {
    pub(crate) fn init_block(&self, device: &Device) -> Block {
        let norm = || {
            LayerNormConfig::new(self.d_model)
                .with_bias(self.bias)
                .init(device)
        };
        let linear = |d_in, d_out, std| {
            LinearConfig::new(d_in, d_out)
                .with_bias(self.bias)
                .with_initializer(Initializer::Normal { mean: 0.0, std })
                .init(device)
        };
        let proj_std = INIT_STD / (2.0 * self.n_layers as f64).sqrt();
        Block {
            norm_attn: norm(),
            attn: Attention::new(self, device),
            norm_mlp: norm(),
            mlp: Mlp {
                fc_in: linear(self.d_model, self.d_ff, INIT_STD),
                fc_out: linear(self.d_ff, self.d_model, proj_std),
                activation: self.activation,
            },
        }
    }
}

impl Block {
    /// The forward pass in burn ops (which autodiff differentiates one by one); training on
    /// the CPU takes [`Block::fused_forward`] where it can.
    ///
    /// # Shapes
    /// - `x`: `[B, T, D]`; returns `[B, T, D]`.
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: Option<&Rope>,
        cache: Option<&mut LayerCache>,
        start: usize,
        dropout_prob: f64,
    ) -> Tensor<3> {
        let a = self.attn.forward(
            self.norm_attn.forward(x.clone()),
            rope,
            cache,
            start,
            dropout_prob,
        );
        let x = x + a;
        let m = self.mlp.forward(self.norm_mlp.forward(x.clone()));
        x + dropout(m, dropout_prob)
    }
}

impl Block {
    /// One decoding step of one sequence on a raw row `x` (`[D]`, updated in place), without
    /// burn's per-op overhead. `None` off the CPU backend, which the first parameter read
    /// tells before anything has changed.
    pub(super) fn forward_row(
        &self,
        x: &mut [f32],
        rope: Option<&Rope>,
        cache: &mut LayerCache,
        pos: usize,
    ) -> Option<()> {
        let h = layer_norm_row(&self.norm_attn, x)?;
        let a = self.attn.forward_row(&h, rope, cache, pos)?;
        // The cache has changed: from here on, a parameter off the CPU backend is a bug.
        let cpu = "every parameter of a block is on one backend";
        add_to(x, &a);
        let h = layer_norm_row(&self.norm_mlp, x).expect(cpu);
        let h = linear_row(&self.mlp.fc_in, &h, cache).expect(cpu);
        let h = fused::activation::activate(self.mlp.activation, &h);
        add_to(x, &linear_row(&self.mlp.fc_out, &h, cache).expect(cpu));
        Some(())
    }

    /// The forward pass as one hand-differentiated graph node ([`fused`]), with dropout
    /// probability `dropout` and rotary positions `rotary` (tables for `x`'s length) if any,
    /// when training on the CPU backend; `None` elsewhere.
    pub(super) fn fused_forward(
        &self,
        x: &Tensor<3>,
        dropout: f64,
        rotary: Option<&Arc<Rotary>>,
    ) -> Option<Tensor<3>> {
        let device = x.device();
        let x = tracked(x.clone())?;
        let (qkv, proj, heads) = self.attn.parts();
        let norm = |n: &LayerNorm| Some([Some(tracked(n.gamma.val())?), bias(&n.beta)?]);
        let linear = |l: &Linear| Some([Some(tracked(l.weight.val())?), bias(&l.bias)?]);
        let pairs = [
            norm(&self.norm_attn)?,
            linear(qkv)?,
            linear(proj)?,
            norm(&self.norm_mlp)?,
            linear(&self.mlp.fc_in)?,
            linear(&self.mlp.fc_out)?,
        ];
        let params: [Option<Tracked>; 12] = pairs.concat().try_into().ok()?;
        let with_bias = params
            .iter()
            .skip(1)
            .step_by(2)
            .filter(|b| b.is_some())
            .count();
        if with_bias != 0 && with_bias != 6 {
            return None;
        }
        let activation = self.mlp.activation;
        Some(fused::block(BlockInputs {
            x,
            params,
            heads,
            activation,
            rotary: rotary.cloned(),
            dropout: (dropout, device),
        }))
    }
}

/// An optional bias as a [`tracked`] tensor: `Some(None)` when absent, `None` off the CPU
/// autodiff backend.
fn bias(b: &Option<Param<Tensor<1>>>) -> Option<Option<Tracked>> {
    match b {
        Some(b) => Some(Some(tracked(b.val())?)),
        None => Some(None),
    }
}

impl Mlp {
    /// # Shapes
    /// - `x`: `[B, T, D]`; returns `[B, T, D]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = forward_linear(&self.fc_in, x); // (B, T, F)
        let h = match self.activation {
            Activation::Gelu => gelu(h),
            Activation::GeluTanh => gelu_approximate(h),
            Activation::SquaredRelu => {
                let r = relu(h);
                r.clone() * r
            }
        };
        forward_linear(&self.fc_out, h)
    }
}
