//! Class-conditional image generation with classifier-free guidance.

use super::{ImageModel, ImageShape};
use crate::{Error, Result};

/// How to draw images.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageGenerateOptions {
    /// Classifier-free guidance scale; 1 disables guidance. Default 2.
    pub guidance: f32,
    /// Euler steps of the flow head per patch. Default 16.
    pub steps: usize,
    /// Seed of the sampling noise.
    pub seed: u64,
    /// Images generated per forward batch. Default 100.
    pub batch_size: usize,
}

impl Default for ImageGenerateOptions {
    fn default() -> Self {
        Self {
            guidance: 2.0,
            steps: 16,
            seed: 0,
            batch_size: 100,
        }
    }
}

/// Draws one image per entry of `labels` (`None`: unconditional), as `[C, H, W]` pixels in
/// `[-1, 1]`.
pub fn generate_images(
    model: &ImageModel,
    shape: &ImageShape,
    labels: &[Option<usize>],
    options: &ImageGenerateOptions,
) -> Result<Vec<Vec<f32>>> {
    let n_classes = model.null_label();
    if let Some(bad) = labels.iter().flatten().find(|&&l| l >= n_classes) {
        return Err(Error::Input(format!(
            "label {bad} is outside the model's {n_classes} classes (0..{n_classes})"
        )));
    }
    if options.steps == 0 || options.batch_size == 0 || !options.guidance.is_finite() {
        return Err(Error::Config(
            "steps and batch_size must be positive and guidance finite".into(),
        ));
    }
    let device = crate::default_device();
    let ids: Vec<usize> = labels.iter().map(|l| l.unwrap_or(n_classes)).collect();
    let _rng = crate::rng::lock_device_rng();
    device.seed(options.seed);
    let mut images = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(options.batch_size) {
        let patches = model.generate(chunk, options.guidance, options.steps, &device); // (B, N, P)
        let values: Vec<f32> = patches.into_data().try_into_vec().expect("f32 pixels");
        images.extend(values.chunks(shape.n_values()).map(|p| shape.unpatchify(p)));
    }
    Ok(images)
}
