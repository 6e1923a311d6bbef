//! One model, three modalities: a joint model whose single core reads and writes text,
//! images and audio, with images and clips conditioned on class labels or on text prompts.

mod condition;
mod config;
mod generate;
mod model;
pub mod prompts;

pub use condition::Condition;
pub use config::{AudioPartConfig, ImagePartConfig, Mix, MultiModelConfig};
pub use generate::{generate_clips, generate_images, prompt_condition};
pub use model::{AudioAdapter, ImageAdapter, MultiModel};

#[cfg(test)]
mod tests;
