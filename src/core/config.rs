//! Configuration of the shared core.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How positions enter the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// Rotary embeddings applied to queries and keys (rotate-half convention, as in LLaMA).
    Rope,
    /// A learned absolute position embedding added to the input (GPT-2 / nanoGPT).
    Learned,
}

/// The MLP non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact (erf) GELU, as in nanoGPT. Slow on burn's CPU backend.
    Gelu,
    /// GELU's tanh approximation (`gelu_new`), as in OpenAI's GPT-2 checkpoints.
    GeluTanh,
    /// `relu(x)^2` (Primer): as good as GELU at this scale and built from cheap ops.
    SquaredRelu,
}

fn default_theta() -> f32 {
    10_000.0
}

/// Shape and options of the Transformer core. Checkpoints store it in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformerConfig {
    /// Width of the residual stream.
    pub d_model: usize,
    /// Attention heads; must divide `d_model`, and `head_dim` must be even for RoPE.
    pub n_heads: usize,
    /// Number of Transformer blocks.
    pub n_layers: usize,
    /// Hidden width of each MLP (usually `4 * d_model`).
    pub d_ff: usize,
    /// Longest sequence the model attends over (prompt plus generated units).
    pub max_seq_len: usize,
    /// Dropout on attention weights and residual branches while training. Default 0.
    #[serde(default)]
    pub dropout: f64,
    /// Position scheme. Default: RoPE.
    #[serde(default = "default_positions")]
    pub positions: Positions,
    /// MLP non-linearity. Default: squared ReLU.
    #[serde(default = "default_activation")]
    pub activation: Activation,
    /// Biases in linear layers and norms (GPT-2 has them). Default: none.
    #[serde(default)]
    pub bias: bool,
    /// RoPE base frequency. Default 10000.
    #[serde(default = "default_theta")]
    pub rope_theta: f32,
}

fn default_positions() -> Positions {
    Positions::Rope
}

fn default_activation() -> Activation {
    Activation::SquaredRelu
}

impl TransformerConfig {
    /// A core small enough for unit tests (2 layers, 32 wide, 16 positions).
    pub fn tiny() -> Self {
        Self {
            d_model: 32,
            n_heads: 4,
            n_layers: 2,
            d_ff: 64,
            max_seq_len: 16,
            dropout: 0.0,
            positions: Positions::Rope,
            activation: Activation::SquaredRelu,
            bias: false,
            rope_theta: default_theta(),
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads.max(1)
    }

    /// Checks the numbers fit together; call before [`TransformerConfig::init`].
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(Error::Config(m));
        if self.d_model == 0 || self.n_heads == 0 || self.n_layers == 0 || self.d_ff == 0 {
            return fail("d_model, n_heads, n_layers and d_ff must all be positive".into());
        }
        if self.max_seq_len < 2 {
            return fail(format!(
                "max_seq_len must be at least 2, got {}",
                self.max_seq_len
            ));
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return fail(format!(
                "d_model ({}) must be divisible by n_heads ({})",
                self.d_model, self.n_heads
            ));
        }
        if self.positions == Positions::Rope && !self.head_dim().is_multiple_of(2) {
            return fail(format!(
                "RoPE needs an even head_dim, got {}",
                self.head_dim()
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return fail(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return fail(format!("rope_theta must be > 1, got {}", self.rope_theta));
        }
        Ok(())
    }
}
