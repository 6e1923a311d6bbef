//! Class-conditional image generation with classifier-free guidance.

use super::{ImageModel, ImageShape};
use crate::modality::continuous::FlowGenerateOptions;
use crate::Result;

/// Draws one image per entry of `labels` (`None`: unconditional), as `[C, H, W]` pixels in
/// `[-1, 1]`.
pub fn generate_images(
    model: &ImageModel,
    shape: &ImageShape,
    labels: &[Option<usize>],
    options: &FlowGenerateOptions,
) -> Result<Vec<Vec<f32>>> {
    options.run_batched(labels, model.null_label(), |ids, device| {
        let patches = model.generate(ids, options, device); // (B, N, P)
        let values: Vec<f32> = patches.into_data().try_into_vec().expect("f32 pixels");
        values
            .chunks(shape.n_values())
            .map(|p| shape.unpatchify(p))
            .collect()
    })
}
