//! Class-conditional audio generation: units from the model, waveforms by Griffin-Lim.

use super::{decode_all, AudioModel, AudioModelConfig};
use crate::modality::continuous::FlowGenerateOptions;
use crate::{Error, Result};

/// Draws one clip per entry of `labels` (`None`: unconditional), as mono waveforms at the
/// model's sample rate, peak-normalised to 0.95. A voice-conditioned model speaks in `voice`
/// (a name from its config), or in voices drawn as the training data has them.
pub fn generate_clips(
    model: &AudioModel,
    config: &AudioModelConfig,
    labels: &[Option<usize>],
    voice: Option<&str>,
    options: &FlowGenerateOptions,
) -> Result<Vec<Vec<f32>>> {
    let stats = config.stats()?;
    let voice = match (voice, &config.voices) {
        (None, _) => None,
        (Some(name), Some(voices)) => Some(voices.id(name)?),
        (Some(_), None) => {
            return Err(Error::Input(
                "this model has no voices to choose from (it was trained without them)".into(),
            ))
        }
    };
    let units = options.run_batched(labels, model.null_label(), |ids, device| {
        let voices = voice.map(|v| vec![v; ids.len()]);
        model.generate(ids, voices.as_deref(), options, device)
    })?;
    Ok(decode_all(&config.format, stats, &units))
}
