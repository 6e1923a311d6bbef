//! A small CNN that recognises the classes of pictures: images, or log-mel spectrograms of
//! clips. It is the judge of generated samples (`aigc eval image|audio`): how often it
//! recognises the requested class (conditional accuracy), and how far its penultimate
//! features of generated samples lie from those of real ones (Fréchet distance).
//!
//! Two 3x3 conv layers (32 and 64 channels) with 2x2 max-pooling, a 128-unit hidden layer
//! (the features), and a linear read-out: the classic Keras MNIST CNN without dropout.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, relu};
use serde::{Deserialize, Serialize};

use crate::modality::image::ImageShape;
use crate::{Error, Result};

/// Shape of a [`Classifier`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// Geometry of the pictures, `[C, H, W]` (patch size unused).
    pub image: ImageShape,
    /// Number of classes.
    pub n_classes: usize,
    /// Width of the feature layer used for Fréchet distances.
    pub features: usize,
}

impl ClassifierConfig {
    /// Checks the image can be pooled twice and the sizes are positive.
    pub fn validate(&self) -> Result<()> {
        let i = &self.image;
        if !matches!(i.channels, 1 | 3)
            || i.height < 4
            || i.width < 4
            || self.n_classes < 2
            || self.features == 0
        {
            return Err(Error::Config(format!(
                "classifier needs 1 or 3 channels, images of at least 4x4 and 2+ classes: {self:?}"
            )));
        }
        Ok(())
    }

    /// Builds the classifier with fresh weights after validating the config.
    pub fn init(&self, device: &Device) -> Result<Classifier> {
        self.validate()?;
        let conv = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device)
        };
        let flat = 64 * (self.image.height / 4) * (self.image.width / 4);
        Ok(Classifier {
            conv1: conv(self.image.channels, 32),
            conv2: conv(32, 64),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            hidden: LinearConfig::new(flat, self.features).init(device),
            output: LinearConfig::new(self.features, self.n_classes).init(device),
        })
    }
}

/// The CNN.
#[derive(Module, Debug)]
pub struct Classifier {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    hidden: Linear,
    output: Linear,
}

impl Classifier {
    /// Penultimate features.
    ///
    /// # Shapes
    /// - `images`: `[B, C, H, W]` in `[-1, 1]`; returns `[B, features]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(self.conv1.forward(images)));
        let x = self.pool.forward(relu(self.conv2.forward(x))); // (B, 64, H/4, W/4)
        let [b, c, h, w] = x.dims();
        relu(self.hidden.forward(x.reshape([b, c * h * w])))
    }

    /// Class logits.
    ///
    /// # Shapes
    /// - `images`: `[B, C, H, W]`; returns `[B, n_classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.logits(self.features(images))
    }

    /// Class logits from penultimate features.
    ///
    /// # Shapes
    /// - `features`: `[B, features]`; returns `[B, n_classes]`.
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        self.output.forward(features)
    }

    /// Mean cross-entropy of `labels`.
    ///
    /// # Shapes
    /// - `images`: `[B, C, H, W]`, `labels`: `[B]`; returns `[1]`.
    pub fn loss(&self, images: Tensor<4>, labels: Tensor<1, Int>) -> Tensor<1> {
        let [b] = labels.dims();
        let log_probs = log_softmax(self.forward(images), 1);
        log_probs.gather(1, labels.reshape([b, 1])).mean().neg()
    }
}

/// Stacks `[C, H, W]` pictures into a `[B, C, H, W]` tensor.
pub fn picture_batch(images: &[&[f32]], shape: &ImageShape, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = images.iter().flat_map(|i| i.iter().copied()).collect();
    Tensor::from_data(
        TensorData::new(
            values,
            [images.len(), shape.channels, shape.height, shape.width],
        ),
        device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let device = crate::default_device();
        let config = ClassifierConfig {
            image: ImageShape::mnist(),
            n_classes: 10,
            features: 128,
        };
        let model = config.init(&device).unwrap();
        let img = vec![0.0f32; 784];
        let x = picture_batch(&[&img, &img], &config.image, &device);
        assert_eq!(model.features(x.clone()).dims(), [2, 128]);
        assert_eq!(model.forward(x).dims(), [2, 10]);
        assert!(ClassifierConfig {
            n_classes: 1,
            ..config
        }
        .validate()
        .is_err());
    }
}
