//! Class-conditional audio generation: units from the model, waveforms by Griffin-Lim.

use super::{decode_all, spread_picks, AudioModel, AudioModelConfig};
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
    let ids: Vec<usize> = labels
        .iter()
        .map(|l| l.unwrap_or(model.null_label()))
        .collect();
    // Spread over the whole request, not batch by batch (see `spread_picks`).
    let picks = spread_picks(&ids, options.seed);
    let mut done = 0;
    let units = options.run_batched(labels, model.null_label(), |ids, device| {
        let batch_picks = &picks[done..done + ids.len()];
        done += ids.len();
        model.generate_picked(ids, batch_picks, options, device)
    })?;
    Ok(decode_all(&config.format, stats, &units))
}
