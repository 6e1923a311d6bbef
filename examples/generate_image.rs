//! Draw handwritten digits with the shipped MNIST model through the library API, and save
//! them as PNGs.
//!
//! ```sh
//! cargo run --release --example generate_image -- 7 digits/
//! ```

use std::path::{Path, PathBuf};

use aigc::modality::continuous::FlowGenerateOptions;
use aigc::Pipeline;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let digit: usize = args.next().unwrap_or_else(|| "7".into()).parse()?;
    let out = PathBuf::from(args.next().unwrap_or_else(|| "digits".into()));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/image-mnist");

    // The checkpoint's config.json says how to rebuild the model and the image geometry.
    let pipeline = Pipeline::load(&dir)?;
    let options = FlowGenerateOptions {
        seed: 42,
        ..pipeline.image_options() // the checkpoint's defaults: guidance 1.5, 16 Euler steps
    };
    let images = pipeline.generate_image(&[Some(digit); 8], &options)?; // image::DynamicImage
    std::fs::create_dir_all(&out)?;
    for (i, image) in images.iter().enumerate() {
        let path = out.join(format!("{digit}_{i}.png"));
        image.save(&path)?;
        eprintln!("{}: {}x{}", path.display(), image.width(), image.height());
    }
    Ok(())
}
