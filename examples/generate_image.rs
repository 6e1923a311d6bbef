//! Draw handwritten digits with the shipped MNIST model through the library API, and save
//! them as one grid PNG.
//!
//! ```sh
//! cargo run --release --example generate_image -- 7 digits.png
//! ```

use std::path::{Path, PathBuf};

use aigc::checkpoint::{self, ModelConfig};
use aigc::modality::continuous::FlowGenerateOptions;
use aigc::modality::image::{generate_images, grid, write_png};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let digit: usize = args.next().unwrap_or_else(|| "7".into()).parse()?;
    let out = PathBuf::from(args.next().unwrap_or_else(|| "digits.png".into()));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/image-mnist");

    // The checkpoint's config.json says how to rebuild the model and the image geometry.
    let (model, config) = checkpoint::load_image(&dir, &aigc::default_device())?;
    let ModelConfig::Image(image) = &config.model else {
        anyhow::bail!("{} is not an image model", dir.display());
    };

    let labels = vec![Some(digit); 16];
    let options = FlowGenerateOptions {
        seed: 42,
        ..FlowGenerateOptions::image() // guidance 1.5, 16 Euler steps per patch
    };
    let images = generate_images(&model, &image.image, &labels, &options)?;
    let (pixels, shape) = grid(&images, &image.image, 4);
    write_png(&out, &pixels, &shape)?;
    eprintln!("[16 images of digit {digit} written to {}]", out.display());
    Ok(())
}
