//! Images and clips from a joint model, conditioned on labels or text prompts.

use super::model::missing;
use super::{Condition, MultiModel, MultiModelConfig};
use crate::modality::audio::decode_all;
use crate::modality::continuous::FlowGenerateOptions;
use crate::modality::text::TextTokenizer;
use crate::modality::Modality;
use crate::{Error, Result};

/// The condition for `prompt`, read with the model's tokenizer.
pub fn prompt_condition(tokenizer: &TextTokenizer, prompt: &str) -> Result<Condition> {
    if prompt.trim().is_empty() {
        return Err(Error::Input("the prompt is empty".into()));
    }
    Ok(Condition::Prompt(tokenizer.encode(prompt)?))
}

/// One image per condition, as `[C, H, W]` pixels in `[-1, 1]`.
pub fn generate_images(
    model: &MultiModel,
    config: &MultiModelConfig,
    conditions: &[Condition],
    options: &FlowGenerateOptions,
) -> Result<Vec<Vec<f32>>> {
    let shape = config
        .image
        .as_ref()
        .ok_or_else(|| missing(Modality::Image))?
        .image;
    options.run_chunks(conditions, |chunk, device| {
        let patches = model.generate_images(chunk, options, device)?; // (B, N, P)
        let values: Vec<f32> = patches.into_data().try_into_vec().expect("f32 pixels");
        Ok(values
            .chunks(shape.n_values())
            .map(|p| shape.unpatchify(p))
            .collect())
    })
}

/// One clip per condition, as mono waveforms at the model's sample rate.
pub fn generate_clips(
    model: &MultiModel,
    config: &MultiModelConfig,
    conditions: &[Condition],
    options: &FlowGenerateOptions,
) -> Result<Vec<Vec<f32>>> {
    let audio = config
        .audio
        .as_ref()
        .ok_or_else(|| missing(Modality::Audio))?;
    let stats = audio.with_core(&config.core).stats()?.clone();
    // Spread over the whole request, not chunk by chunk (see `spread_picks`).
    let picks = model.onset_picks(conditions, options.seed)?;
    let picked: Vec<(Condition, f32)> = conditions.iter().cloned().zip(picks).collect();
    let units = options.run_chunks(&picked, |chunk, device| {
        let (conditions, picks): (Vec<Condition>, Vec<f32>) = chunk.iter().cloned().unzip();
        model.generate_clips(&conditions, &picks, options, device)
    })?;
    Ok(decode_all(&audio.format, &stats, &units))
}
