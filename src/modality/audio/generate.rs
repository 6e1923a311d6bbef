//! Class-conditional audio generation: units from the model, waveforms by Griffin-Lim.

use super::{decode_all, AudioModel, AudioModelConfig};
use crate::modality::continuous::FlowGenerateOptions;
use crate::Result;

/// Draws one clip per entry of `labels` (`None`: unconditional), as mono waveforms at the
/// model's sample rate, peak-normalised to 0.95.
pub fn generate_clips(
    model: &AudioModel,
    config: &AudioModelConfig,
    labels: &[Option<usize>],
    options: &FlowGenerateOptions,
) -> Result<Vec<Vec<f32>>> {
    let stats = config.stats()?;
    let units = options.run_batched(labels, model.null_label(), |ids, device| {
        model.generate(ids, options, device)
    })?;
    Ok(decode_all(&config.format, stats, &units))
}
