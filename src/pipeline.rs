//! One entry point for generation from any checkpoint: [`Pipeline::load`] reads the
//! checkpoint's `config.json`, rebuilds whichever model it describes, and the `generate_*`
//! method of that model's modality returns content (text, images, waveforms) instead of tensors.
//!
//! ```no_run
//! let pipeline = aigc::Pipeline::load("models/image-mnist")?;
//! let options = pipeline.image_options(); // the checkpoint's sampling defaults
//! let sevens = pipeline.generate_image(&[Some(7); 4], &options)?;
//! sevens[0].save("seven.png").expect("writable");
//! # Ok::<(), aigc::Error>(())
//! ```

use std::path::{Path, PathBuf};

use image::DynamicImage;

use crate::checkpoint::{self, with_article, ModelConfig, SamplingDefaults};
use crate::modality::audio::{generate_clips, AudioModel, AudioModelConfig};
use crate::modality::continuous::FlowGenerateOptions;
use crate::modality::image::{generate_images, to_image, ImageModel, ImageModelConfig, ImageShape};
use crate::modality::multi::{self, Condition, MultiModel, MultiModelConfig};
use crate::modality::text::{generate, GenerateOptions, Generation, TextModel, TextTokenizer};
use crate::modality::Modality;
use crate::{Error, Result};

/// A checkpoint loaded for generation, whatever its modality.
pub struct Pipeline {
    dir: PathBuf,
    model: Loaded,
    sampling: SamplingDefaults,
}

/// The model and what its generation needs besides weights (boxed: models differ in size).
enum Loaded {
    Text(Box<(TextModel, TextTokenizer)>),
    Image(Box<ImageModel>, ImageModelConfig),
    Audio(Box<AudioModel>, Box<AudioModelConfig>),
    Multi(Box<(MultiModel, TextTokenizer)>, Box<MultiModelConfig>),
}

fn label_conditions(labels: &[Option<usize>]) -> Vec<Condition> {
    labels
        .iter()
        .map(|l| l.map_or(Condition::Unconditional, Condition::Label))
        .collect()
}

/// 8-bit images of `[C, H, W]` pixels in `[-1, 1]`.
fn to_images(images: &[Vec<f32>], shape: &ImageShape) -> Vec<DynamicImage> {
    images
        .iter()
        .map(|pixels| to_image(pixels, shape))
        .collect()
}

fn to_clips(clips: Vec<Vec<f32>>, sample_rate: u32) -> Vec<Clip> {
    clips
        .into_iter()
        .map(|samples| Clip {
            samples,
            sample_rate,
        })
        .collect()
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
        let config = checkpoint::load_config(&dir)?;
        let model = match config.model {
            ModelConfig::Text(_) => {
                let (model, tokenizer, _) = checkpoint::load_text(&dir, &device)?;
                Loaded::Text(Box::new((model, tokenizer)))
            }
            ModelConfig::Image(config) => {
                Loaded::Image(Box::new(checkpoint::load_image(&dir, &device)?.0), config)
            }
            ModelConfig::Audio(config) => Loaded::Audio(
                Box::new(checkpoint::load_audio(&dir, &device)?.0),
                Box::new(config),
            ),
            ModelConfig::Multi(config) => {
                let (model, tokenizer, _) = checkpoint::load_multi(&dir, &device)?;
                Loaded::Multi(Box::new((model, tokenizer)), Box::new(config))
            }
            ModelConfig::Classifier(_) => {
                return Err(Error::Input(format!(
                    "{} is a classifier, which generates nothing",
                    dir.display()
                )))
            }
        };
        let sampling = config.sampling;
        Ok(Self {
            dir,
            model,
            sampling,
        })
    }

    /// Image sampling options for this checkpoint: [`FlowGenerateOptions::image`] with the
    /// checkpoint's own defaults (`sampling` in its `config.json`) over them.
    pub fn image_options(&self) -> FlowGenerateOptions {
        guided_by(FlowGenerateOptions::image(), self.sampling.image_guidance)
    }

    /// Audio sampling options for this checkpoint: [`FlowGenerateOptions::audio`] with the
    /// checkpoint's own defaults over them.
    pub fn audio_options(&self) -> FlowGenerateOptions {
        guided_by(FlowGenerateOptions::audio(), self.sampling.audio_guidance)
    }

    /// The modality the loaded model generates (a joint model: text, and more).
    pub fn modality(&self) -> Modality {
        match self.model {
            Loaded::Text(..) | Loaded::Multi(..) => Modality::Text,
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
            Loaded::Multi(multi, _) => {
                generate(&multi.0.text(), &multi.1, prompt, options, on_text)
            }
            _ => Err(self.not_a(Modality::Text)),
        }
    }

    /// The image settings (geometry, classes); an error naming the model's modality if it
    /// draws no images.
    pub fn image_config(&self) -> Result<ImageModelConfig> {
        let config = match &self.model {
            Loaded::Image(_, config) => Some(config.clone()),
            Loaded::Multi(_, config) => config.image.as_ref().map(|i| i.with_core(&config.core)),
            _ => None,
        };
        config.ok_or_else(|| self.not_a(Modality::Image))
    }

    /// The audio settings (codec, statistics, classes); an error naming the model's modality
    /// if it does not speak.
    pub fn audio_config(&self) -> Result<AudioModelConfig> {
        let config = match &self.model {
            Loaded::Audio(_, config) => Some(config.as_ref().clone()),
            Loaded::Multi(_, config) => config.audio.as_ref().map(|a| a.with_core(&config.core)),
            _ => None,
        };
        config.ok_or_else(|| self.not_a(Modality::Audio))
    }

    /// Whether the model reads text prompts as conditions (a joint model).
    pub fn reads_prompts(&self) -> bool {
        matches!(self.model, Loaded::Multi(..))
    }

    /// The condition for a text prompt ("a handwritten seven"); joint models only.
    pub fn prompt(&self, text: &str) -> Result<Condition> {
        match &self.model {
            Loaded::Multi(multi, _) => multi::prompt_condition(&multi.1, text),
            _ => Err(self.no_prompts()),
        }
    }

    fn no_prompts(&self) -> Error {
        Error::Input(format!(
            "{} takes class labels, not prompts; prompts need a joint model (aigc pretrain multi)",
            self.dir.display()
        ))
    }

    /// One image per condition, as `[C, H, W]` pixels in `[-1, 1]`.
    pub fn image_pixels(
        &self,
        conditions: &[Condition],
        options: &FlowGenerateOptions,
    ) -> Result<Vec<Vec<f32>>> {
        match &self.model {
            Loaded::Image(model, config) => {
                let labels = self.labels_of(conditions)?;
                generate_images(model, &config.image, &labels, options)
            }
            Loaded::Multi(multi, config) if config.image.is_some() => {
                multi::generate_images(&multi.0, config, conditions, options)
            }
            _ => Err(self.not_a(Modality::Image)),
        }
    }

    /// One clip per condition, as mono samples at the model's rate.
    pub fn clip_samples(
        &self,
        conditions: &[Condition],
        options: &FlowGenerateOptions,
    ) -> Result<Vec<Vec<f32>>> {
        match &self.model {
            Loaded::Audio(model, config) => {
                let labels = self.labels_of(conditions)?;
                generate_clips(model, config, &labels, options)
            }
            Loaded::Multi(multi, config) if config.audio.is_some() => {
                multi::generate_clips(&multi.0, config, conditions, options)
            }
            _ => Err(self.not_a(Modality::Audio)),
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
        self.images(&label_conditions(labels), options)
    }

    /// One image per text prompt ("a handwritten seven"); joint models only.
    pub fn generate_image_from_prompts(
        &self,
        prompts: &[&str],
        options: &FlowGenerateOptions,
    ) -> Result<Vec<DynamicImage>> {
        let conditions = prompts
            .iter()
            .map(|p| self.prompt(p))
            .collect::<Result<Vec<_>>>()?;
        self.images(&conditions, options)
    }

    fn images(
        &self,
        conditions: &[Condition],
        options: &FlowGenerateOptions,
    ) -> Result<Vec<DynamicImage>> {
        let pixels = self.image_pixels(conditions, options)?;
        let shape = self.image_config()?.image;
        Ok(to_images(&pixels, &shape))
    }

    /// One clip per entry of `labels` (a class id, or `None` for unconditional samples).
    pub fn generate_audio(
        &self,
        labels: &[Option<usize>],
        options: &FlowGenerateOptions,
    ) -> Result<Vec<Clip>> {
        self.clips(&label_conditions(labels), options)
    }

    /// One clip per text prompt ("say four"); joint models only.
    pub fn generate_audio_from_prompts(
        &self,
        prompts: &[&str],
        options: &FlowGenerateOptions,
    ) -> Result<Vec<Clip>> {
        let conditions = prompts
            .iter()
            .map(|p| self.prompt(p))
            .collect::<Result<Vec<_>>>()?;
        self.clips(&conditions, options)
    }

    fn clips(&self, conditions: &[Condition], options: &FlowGenerateOptions) -> Result<Vec<Clip>> {
        let samples = self.clip_samples(conditions, options)?;
        let rate = self.audio_config()?.format.sample_rate;
        Ok(to_clips(samples, rate))
    }

    /// The labels of label-only conditions (what a single-modality model understands).
    fn labels_of(&self, conditions: &[Condition]) -> Result<Vec<Option<usize>>> {
        conditions
            .iter()
            .map(|c| match c {
                Condition::Label(l) => Ok(Some(*l)),
                Condition::Unconditional => Ok(None),
                Condition::Prompt(_) => Err(self.no_prompts()),
            })
            .collect()
    }

    fn not_a(&self, wanted: Modality) -> Error {
        let dir = self.dir.display();
        match self.model {
            Loaded::Multi(..) => Error::Input(format!(
                "{dir} is a joint model with no {wanted} part (it was trained without {wanted} data)"
            )),
            _ => Error::Input(format!(
                "{dir} is {} model; generating {wanted} needs {} model",
                with_article(&self.modality().to_string()),
                with_article(&wanted.to_string())
            )),
        }
    }
}

/// `defaults` with the checkpoint's `guidance`, if it has one.
fn guided_by(defaults: FlowGenerateOptions, guidance: Option<f32>) -> FlowGenerateOptions {
    FlowGenerateOptions {
        guidance: guidance.unwrap_or(defaults.guidance),
        ..defaults
    }
}
