//! Class-conditional audio generation: units from the model, waveforms by Griffin-Lim.

use super::{decode_all, spread_picks, AudioModel, AudioModelConfig};
use crate::modality::continuous::{label_ids, FlowGenerateOptions};
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
    let ids = label_ids(labels, model.null_label())?;
    // Spread over the whole request, not batch by batch (see `spread_picks`).
    let picked: Vec<(usize, f32)> = ids
        .iter()
        .copied()
        .zip(spread_picks(&ids, options.seed))
        .collect();
    let units = options.run_chunks(&picked, |chunk, device| {
        let (ids, picks): (Vec<usize>, Vec<f32>) = chunk.iter().copied().unzip();
        Ok(model.generate_picked(&ids, &picks, options, device))
    })?;
    Ok(decode_all(&config.format, stats, &units))
}
