//! The image model: a class token and ViT-style patch embeddings go through the shared core;
//! the output at position `i` conditions a rectified-flow head that draws patch `i`
//! (MAR-style autoregression over continuous patches in raster order).
//!
//! ```text
//! input:  [class] [patch 0] [patch 1] ... [patch N-2]
//! output:    z0      z1        z2     ...    z(N-1)     z_i -> FlowHead -> patch i
//! ```

use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::ImageShape;
use crate::core::{KvCache, Positions, Transformer, TransformerConfig, INIT_STD};
use crate::modality::continuous::{condition_ids, FlowGenerateOptions, UnitSampler};
use crate::modality::flow::{FlowHead, FlowHeadConfig, FlowTime};
use crate::{Error, Result};

fn default_draws() -> usize {
    4
}

/// Shape of an image model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageModelConfig {
    /// Image geometry and patch size.
    pub image: ImageShape,
    /// Number of class labels; label id `n_classes` is the "no label" token used for
    /// unconditional generation and classifier-free guidance.
    pub n_classes: usize,
    /// The shared core; `max_seq_len` must be at least the number of patches.
    pub core: TransformerConfig,
    /// Hidden width of the flow head.
    pub head_width: usize,
    /// Residual blocks in the flow head.
    pub head_blocks: usize,
    /// Noise/time draws per patch in the training loss. Default 4.
    #[serde(default = "default_draws")]
    pub noise_draws: usize,
}

impl ImageModelConfig {
    /// A model small enough for unit tests: 8x8 grayscale images in 4x4 patches.
    pub fn tiny() -> Self {
        Self {
            image: ImageShape {
                channels: 1,
                height: 8,
                width: 8,
                patch_size: 4,
            },
            n_classes: 3,
            core: TransformerConfig {
                positions: Positions::Learned,
                ..TransformerConfig::tiny()
            },
            head_width: 32,
            head_blocks: 2,
            noise_draws: 2,
        }
    }

    /// The flow head this config implies.
    pub fn head(&self) -> FlowHeadConfig {
        FlowHeadConfig {
            unit_dim: self.image.patch_dim(),
            cond_dim: self.core.d_model,
            width: self.head_width,
            n_blocks: self.head_blocks,
        }
    }

    /// Checks the pieces fit together.
    pub fn validate(&self) -> Result<()> {
        self.image.validate()?;
        self.core.validate()?;
        self.head().validate()?;
        if self.n_classes == 0 || self.noise_draws == 0 {
            return Err(Error::Config(
                "n_classes and noise_draws must be positive".into(),
            ));
        }
        if self.core.max_seq_len < self.image.n_patches() {
            return Err(Error::Config(format!(
                "max_seq_len ({}) must cover the {} patches of an image",
                self.core.max_seq_len,
                self.image.n_patches()
            )));
        }
        Ok(())
    }

    /// Builds the model with fresh weights after validating the config.
    pub fn init(&self, device: &Device) -> Result<ImageModel> {
        self.validate()?;
        let normal = Initializer::Normal {
            mean: 0.0,
            std: INIT_STD,
        };
        Ok(ImageModel {
            class_embed: EmbeddingConfig::new(self.n_classes + 1, self.core.d_model)
                .with_initializer(normal.clone())
                .init(device),
            patch_embed: LinearConfig::new(self.image.patch_dim(), self.core.d_model)
                .with_initializer(normal)
                .init(device),
            core: self.core.init(device),
            head: self.head().init(device),
            n_classes: self.n_classes,
            patch_dim: self.image.patch_dim(),
            n_patches: self.image.n_patches(),
            noise_draws: self.noise_draws,
        })
    }
}

/// Class embedding + patch embedding + core + flow head.
#[derive(Module, Debug)]
pub struct ImageModel {
    /// `[n_classes + 1, D]`; the last row is the "no label" token.
    class_embed: Embedding,
    /// `[patch_dim, D]`
    patch_embed: Linear,
    core: Transformer,
    head: FlowHead,
    n_classes: usize,
    patch_dim: usize,
    n_patches: usize,
    noise_draws: usize,
}

impl ImageModel {
    /// The label id meaning "no label".
    pub fn null_label(&self) -> usize {
        self.n_classes
    }

    /// The adapter, decoder and core as [`ImageParts`].
    fn parts(&self) -> ImageParts<'_> {
        ImageParts {
            core: &self.core,
            patch_embed: &self.patch_embed,
            head: &self.head,
            patch_dim: self.patch_dim,
            n_patches: self.n_patches,
            noise_draws: self.noise_draws,
        }
    }

    /// Flow-matching loss of a batch.
    ///
    /// # Shapes
    /// - `patches`: `[B, N, patch_dim]` in `[-1, 1]`; `labels`: `[B]` (`null_label` allowed);
    ///   returns `[1]`.
    pub fn loss(&self, patches: Tensor<3>, labels: Tensor<1, Int>) -> Tensor<1> {
        let b = labels.dims()[0];
        let class = self.class_embed.forward(labels.reshape([b, 1])); // (B, 1, D)
        self.parts().loss(class, patches)
    }

    /// Draws one image per label, patch by patch with a KV cache. With `guidance != 1` the
    /// conditional and unconditional sequences run together in one batch (classifier-free
    /// guidance). Pixels are clamped to `[-1, 1]` only at the end.
    ///
    /// # Shapes
    /// - returns `[B, N, patch_dim]`
    pub fn generate(
        &self,
        labels: &[usize],
        options: &FlowGenerateOptions,
        device: &Device,
    ) -> Tensor<3> {
        let ids = condition_ids(labels, self.null_label(), options.guidance != 1.0, device);
        let class = self.class_embed.forward(ids); // (rows, 1, D)
        self.parts().generate(class, labels.len(), options)
    }
}

/// An image adapter and decoder with the core they run on, borrowed from the model that
/// holds them (an [`ImageModel`], or a joint model whose core other modalities share).
/// Images follow a condition prefix of `P` positions (a class token, or a joint model's
/// condition slots); the output at the prefix's last position conditions patch 0.
pub(crate) struct ImageParts<'a> {
    pub core: &'a Transformer,
    pub patch_embed: &'a Linear,
    pub head: &'a FlowHead,
    pub patch_dim: usize,
    pub n_patches: usize,
    pub noise_draws: usize,
}

impl ImageParts<'_> {
    /// Flow-matching loss of `patches` after `prefix`.
    ///
    /// # Shapes
    /// - `prefix`: `[B, P, D]`; `patches`: `[B, N, patch_dim]`; returns `[1]`.
    pub fn loss(&self, prefix: Tensor<3>, patches: Tensor<3>) -> Tensor<1> {
        let [b, n, p] = patches.dims();
        let p_len = prefix.dims()[1];
        let inputs = self
            .patch_embed
            .forward(patches.clone().narrow(1, 0, n - 1)); // (B, N-1, D)
        let z = self.core.forward(Tensor::cat(vec![prefix, inputs], 1)); // (B, P+N-1, D)
        let d = z.dims()[2];
        self.head.loss(
            patches.reshape([b * n, p]),
            z.narrow(1, p_len - 1, n).reshape([b * n, d]),
            self.noise_draws,
            FlowTime::Uniform,
        )
    }

    /// Draws `n_images` images after `prefix` (with guidance, its rows are the conditional
    /// prefixes, then as many unconditional ones).
    ///
    /// # Shapes
    /// - `prefix`: `[rows, P, D]`; returns `[n_images, N, patch_dim]`, clamped to `[-1, 1]`.
    pub fn generate(
        &self,
        prefix: Tensor<3>,
        n_images: usize,
        options: &FlowGenerateOptions,
    ) -> Tensor<3> {
        let p_len = prefix.dims()[1];
        let mut cache: KvCache = self.core.new_cache();
        let z = self
            .core
            .forward_cached(prefix, &mut cache)
            .narrow(1, p_len - 1, 1); // (rows, 1, D)
        let sampler = UnitSampler {
            core: self.core,
            head: self.head,
            embed: self.patch_embed,
            unit_dim: self.patch_dim,
        };
        sampler
            .sample(z, &mut cache, &vec![self.n_patches; n_images], options)
            .clamp(-1.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_generation_shapes() {
        let device = crate::default_device();
        let config = ImageModelConfig::tiny();
        let model = config.init(&device).unwrap();
        let patches = Tensor::<3>::zeros([2, 4, 16], &device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 3], [2]), &device);
        let loss = model.loss(patches, labels).into_scalar::<f32>();
        assert!(loss.is_finite() && loss > 0.0);
        for guidance in [1.0, 2.0] {
            let options = FlowGenerateOptions {
                guidance,
                steps: 3,
                ..FlowGenerateOptions::image()
            };
            let images = model.generate(&[0, 2, 1], &options, &device);
            assert_eq!(images.dims(), [3, 4, 16]);
            assert!(images.abs().max().into_scalar::<f32>() <= 1.0);
        }
    }

    #[test]
    fn configs_whose_context_cannot_hold_the_image_are_rejected() {
        let mut config = ImageModelConfig::tiny();
        config.image = ImageShape::mnist(); // 49 patches, context 16
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("49 patches"), "{err}");
    }
}
