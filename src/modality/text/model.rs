//! The text model: token-embedding adapter, shared core, categorical decoder whose weights are
//! tied to the embedding (Press & Wolf 2017), as in GPT-2.

use burn::nn::{Embedding, EmbeddingConfig, Initializer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use crate::core::{cross_entropy_sum, KvCache, Transformer, TransformerConfig, INIT_STD};
use crate::{Error, Result};

/// A text model's shape: its vocabulary and its core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextModelConfig {
    /// Number of token ids (the tokenizer's vocabulary size).
    pub vocab_size: usize,
    /// The shared core.
    pub core: TransformerConfig,
}

impl TextModelConfig {
    /// A model small enough for unit tests.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            core: TransformerConfig::tiny(),
        }
    }

    /// Checks the config before building a model from it.
    pub fn validate(&self) -> Result<()> {
        if self.vocab_size == 0 {
            return Err(Error::Config("vocab_size must be positive".into()));
        }
        self.core.validate()
    }

    /// Builds the model with fresh weights after validating the config.
    pub fn init(&self, device: &Device) -> Result<TextModel> {
        self.validate()?;
        Ok(TextModel {
            tok_embed: EmbeddingConfig::new(self.vocab_size, self.core.d_model)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: INIT_STD,
                })
                .init(device),
            core: self.core.init(device),
        })
    }
}

/// Token embedding + core + tied categorical head.
#[derive(Module, Debug)]
pub struct TextModel {
    /// `[V, D]`: token embeddings, also the output projection.
    tok_embed: Embedding,
    core: Transformer,
}

impl TextModel {
    /// A text model from an embedding and a core it shares with its owner (a joint model);
    /// the parameters are shared, not copied.
    pub(crate) fn from_parts(tok_embed: Embedding, core: Transformer) -> Self {
        Self { tok_embed, core }
    }

    /// Next-token logits for every position.
    ///
    /// # Shapes
    /// - `tokens`: `[B, T]`; returns `[B, T, V]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let h = self.core.forward(self.tok_embed.forward(tokens));
        self.logits(h)
    }

    /// Next-token logits for the new positions, appending their keys/values to `cache`.
    ///
    /// # Shapes
    /// - `tokens`: `[B, T]`; returns `[B, T, V]`.
    pub fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        let h = self
            .core
            .forward_cached(self.tok_embed.forward(tokens), cache);
        self.logits(h)
    }

    /// Summed cross-entropy (nats) of `targets` under the model. Divide by the number of
    /// targets for the mean; summing lets callers score a whole split exactly.
    ///
    /// # Shapes
    /// - `tokens`, `targets`: `[B, T]`; returns `[1]`.
    ///
    /// # Panics
    /// On an id at or above the vocabulary size (the tokenizer never makes one).
    pub fn loss_sum(&self, tokens: Tensor<2, Int>, targets: Tensor<2, Int>) -> Tensor<1> {
        let [b, t] = targets.dims();
        let h = self.core.forward(self.tok_embed.forward(tokens));
        let d = h.dims()[2];
        let h = h.reshape([b * t, d]); // (B*T, D)
        let (w, targets) = (self.tok_embed.weight.val(), targets.reshape([b * t]));
        if let Some(loss) = cross_entropy_sum(&h, &w, &targets) {
            return loss; // training on the CPU: one fused node
        }
        let log_probs = log_softmax(h.matmul(w.transpose()), 1); // (B*T, V)
        log_probs.gather(1, targets.reshape([b * t, 1])).sum().neg()
    }

    /// Mean cross-entropy per target (the training loss).
    ///
    /// # Shapes
    /// - `tokens`, `targets`: `[B, T]`; returns `[1]`.
    pub fn loss(&self, tokens: Tensor<2, Int>, targets: Tensor<2, Int>) -> Tensor<1> {
        let n = targets.dims().iter().product::<usize>();
        self.loss_sum(tokens, targets) / n as f64
    }

    /// The longest sequence the model attends over.
    pub fn max_seq_len(&self) -> usize {
        self.core.max_seq_len()
    }

    /// An empty KV cache for [`TextModel::forward_cached`].
    pub fn new_cache(&self) -> KvCache {
        self.core.new_cache()
    }

    /// # Shapes
    /// - `h`: `[B, T, D]`; returns `[B, T, V]`.
    fn logits(&self, h: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = h.dims();
        let w = self.tok_embed.weight.val(); // (V, D)
        let v = w.dims()[0];
        h.reshape([b * t, d])
            .matmul(w.transpose())
            .reshape([b, t, v])
    }
}
