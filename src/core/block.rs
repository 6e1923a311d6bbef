//! One pre-norm Transformer block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.

use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, gelu_approximate, relu};

use super::attention::Attention;
use super::cache::LayerCache;
use super::matvec::linear;
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

impl Mlp {
    /// # Shapes
    /// - `x`: `[B, T, D]`; returns `[B, T, D]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = linear(&self.fc_in, x); // (B, T, F)
        let h = match self.activation {
            Activation::Gelu => gelu(h),
            Activation::GeluTanh => gelu_approximate(h),
            Activation::SquaredRelu => {
                let r = relu(h);
                r.clone() * r
            }
        };
        linear(&self.fc_out, h)
    }
}
