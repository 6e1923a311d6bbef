//! One entry point for generation from any checkpoint: [`Pipeline::load`] reads the
//! checkpoint's `config.json`, rebuilds whichever model it describes, and the `generate_*`
//! method of that model's modality returns content (text, images, waveforms) instead of tensors.
//!
//! ```no_run
//! let pipeline = aigc::Pipeline::load("models/image-mnist")?;
//! let options = aigc::modality::continuous::FlowGenerateOptions::image();
//! let sevens = pipeline.generate_image(&[Some(7); 4], &options)?;
//! sevens[0].save("seven.png").expect("writable");
//! # Ok::<(), aigc::Error>(())
//! ```

use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage, RgbImage};

use crate::checkpoint::{self, ModelConfig};
use crate::modality::audio::{generate_clips, AudioModel, AudioModelConfig};
use crate::modality::continuous::FlowGenerateOptions;
use crate::modality::image::{generate_images, to_bytes, ImageModel, ImageModelConfig};
use crate::modality::text::{generate, GenerateOptions, Generation, TextModel, TextTokenizer};
use crate::modality::Modality;
use crate::{Error, Result};

/// A checkpoint loaded for generation, whatever its modality.
pub struct Pipeline {
    dir: PathBuf,
    model: Loaded,
}

/// The model and what its generation needs besides weights (boxed: models differ in size).
enum Loaded {
    Text(Box<(TextModel, TextTokenizer)>),
    Image(Box<ImageModel>, ImageModelConfig),
    Audio(Box<AudioModel>, AudioModelConfig),
}

/// A generated waveform.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// Mono samples in `[-1, 1]`.
    pub samples: Vec<f32>,
    /// Samples per second.
    pub sample_rate: u32,
}

impl Pipeline {
    /// Loads the checkpoint in `dir` onto [`crate::default_device`]. Classifiers (which
    /// judge samples but generate nothing) are refused.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let device = crate::default_device();
        let model = match checkpoint::load_config(&dir)?.model {
            ModelConfig::Text(_) => {
                let (model, tokenizer, _) = checkpoint::load_text(&dir, &device)?;
                Loaded::Text(Box::new((model, tokenizer)))
            }
            ModelConfig::Image(config) => {
                Loaded::Image(Box::new(checkpoint::load_image(&dir, &device)?.0), config)
            }
            ModelConfig::Audio(config) => {
                Loaded::Audio(Box::new(checkpoint::load_audio(&dir, &device)?.0), config)
            }
            ModelConfig::Classifier(_) => {
                return Err(Error::Input(format!(
                    "{} is a classifier, which generates nothing",
                    dir.display()
                )))
            }
        };
        Ok(Self { dir, model })
    }

    /// The modality the loaded model generates.
    pub fn modality(&self) -> Modality {
        match self.model {
            Loaded::Text(..) => Modality::Text,
            Loaded::Image(..) => Modality::Image,
            Loaded::Audio(..) => Modality::Audio,
        }
    }

    /// Continues `prompt`; `on_text` sees each new piece of text as it is decoded.
    pub fn generate_text(
        &self,
        prompt: &str,
        options: &GenerateOptions,
        on_text: impl FnMut(&str),
    ) -> Result<Generation> {
        match &self.model {
            Loaded::Text(text) => generate(&text.0, &text.1, prompt, options, on_text),
            _ => Err(self.not_a(Modality::Text)),
        }
    }

    /// One image per entry of `labels` (a class id, or `None` for unconditional samples):
    /// [`DynamicImage::ImageLuma8`] for grayscale models, [`DynamicImage::ImageRgb8`] for
    /// colour ones.
    pub fn generate_image(
        &self,
        labels: &[Option<usize>],
        options: &FlowGenerateOptions,
    ) -> Result<Vec<DynamicImage>> {
        let Loaded::Image(model, config) = &self.model else {
            return Err(self.not_a(Modality::Image));
        };
        let shape = &config.image;
        let (w, h) = (shape.width as u32, shape.height as u32);
        let images = generate_images(model, shape, labels, options)?;
        Ok(images
            .iter()
            .map(|pixels| {
                let bytes = to_bytes(pixels, shape);
                let image = match shape.channels {
                    1 => GrayImage::from_raw(w, h, bytes).map(DynamicImage::ImageLuma8),
                    _ => RgbImage::from_raw(w, h, bytes).map(DynamicImage::ImageRgb8),
                };
                image.expect("the buffer matches the model's image shape")
            })
            .collect())
    }

    /// One clip per entry of `labels` (a class id, or `None` for unconditional samples).
    pub fn generate_audio(
        &self,
        labels: &[Option<usize>],
        options: &FlowGenerateOptions,
    ) -> Result<Vec<Clip>> {
        let Loaded::Audio(model, config) = &self.model else {
            return Err(self.not_a(Modality::Audio));
        };
        let sample_rate = config.format.sample_rate;
        let clips = generate_clips(model, config, labels, options)?;
        Ok(clips
            .into_iter()
            .map(|samples| Clip {
                samples,
                sample_rate,
            })
            .collect())
    }

    fn not_a(&self, wanted: Modality) -> Error {
        let a = |m: Modality| if m == Modality::Text { "a" } else { "an" };
        let have = self.modality();
        Error::Input(format!(
            "{} is {} {have} model; generating {wanted} needs {} {wanted} model",
            self.dir.display(),
            a(have),
            a(wanted)
        ))
    }
}
