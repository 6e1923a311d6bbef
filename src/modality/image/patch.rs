//! The image codec: images as `[C, H, W]` pixels in `[-1, 1]`, cut into non-overlapping
//! `patch_size` x `patch_size` patches in raster order (ViT, Dosovitskiy et al. 2021).

use crate::{Error, Result};

/// Geometry of the images a model handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageShape {
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Height in pixels; a multiple of `patch_size`.
    pub height: usize,
    /// Width in pixels; a multiple of `patch_size`.
    pub width: usize,
    /// Side of a square patch.
    pub patch_size: usize,
}

impl ImageShape {
    /// 28x28 grayscale in 4x4 patches (MNIST).
    pub fn mnist() -> Self {
        Self {
            channels: 1,
            height: 28,
            width: 28,
            patch_size: 4,
        }
    }

    /// Checks the image divides into whole patches.
    pub fn validate(&self) -> Result<()> {
        let p = self.patch_size;
        if !matches!(self.channels, 1 | 3) {
            return Err(Error::Config(format!(
                "channels must be 1 or 3, got {}",
                self.channels
            )));
        }
        if p == 0
            || self.height == 0
            || self.width == 0
            || !self.height.is_multiple_of(p)
            || !self.width.is_multiple_of(p)
        {
            return Err(Error::Config(format!(
                "a {}x{} image does not divide into {p}x{p} patches",
                self.height, self.width
            )));
        }
        Ok(())
    }

    /// Patches per image.
    pub fn n_patches(&self) -> usize {
        (self.height / self.patch_size) * (self.width / self.patch_size)
    }

    /// Values per patch (`channels * patch_size^2`).
    pub fn patch_dim(&self) -> usize {
        self.channels * self.patch_size * self.patch_size
    }

    /// Values per image.
    pub fn n_values(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Cuts a `[C, H, W]` image into `[n_patches, patch_dim]` rows, raster order, each row
    /// ordered (channel, row, column) within the patch.
    pub fn patchify(&self, image: &[f32]) -> Vec<f32> {
        assert_eq!(
            image.len(),
            self.n_values(),
            "image size checked at the boundary"
        );
        let mut out = Vec::with_capacity(image.len());
        self.for_each_patch_value(|src| out.push(image[src]));
        out
    }

    /// Inverse of [`ImageShape::patchify`].
    pub fn unpatchify(&self, patches: &[f32]) -> Vec<f32> {
        assert_eq!(
            patches.len(),
            self.n_values(),
            "patch count checked at the boundary"
        );
        let mut image = vec![0.0; patches.len()];
        let mut next = patches.iter();
        self.for_each_patch_value(|dst| image[dst] = *next.next().expect("same length"));
        image
    }

    /// Calls `f` with the `[C, H, W]` index of every value, in patch order.
    fn for_each_patch_value(&self, mut f: impl FnMut(usize)) {
        let (p, h, w) = (self.patch_size, self.height, self.width);
        for py in 0..h / p {
            for px in 0..w / p {
                for c in 0..self.channels {
                    for dy in 0..p {
                        for dx in 0..p {
                            f((c * h + py * p + dy) * w + px * p + dx);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patchify_round_trips_and_orders_patches_in_raster_order() {
        let shape = ImageShape {
            channels: 3,
            height: 4,
            width: 6,
            patch_size: 2,
        };
        shape.validate().unwrap();
        let image: Vec<f32> = (0..shape.n_values()).map(|i| i as f32).collect();
        let patches = shape.patchify(&image);
        assert_eq!(shape.n_patches(), 6);
        assert_eq!(shape.patch_dim(), 12);
        // Patch 1 is the second from the left in the top row: channel 0 rows 0-1, columns 2-3.
        assert_eq!(&patches[12..16], &[2.0, 3.0, 8.0, 9.0]);
        assert_eq!(shape.unpatchify(&patches), image);
    }

    #[test]
    fn shapes_that_do_not_divide_are_rejected() {
        for bad in [
            ImageShape {
                channels: 1,
                height: 28,
                width: 28,
                patch_size: 5,
            },
            ImageShape {
                channels: 2,
                height: 28,
                width: 28,
                patch_size: 4,
            },
            ImageShape {
                channels: 1,
                height: 0,
                width: 28,
                patch_size: 4,
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(ImageShape::mnist().validate().is_ok());
        assert_eq!(ImageShape::mnist().n_patches(), 49);
    }
}
