//! Learning-rate schedule: linear warmup, then cosine decay to a floor (GPT-3, nanoGPT).
//! A pure function of the step, so a resumed run needs no scheduler state.

use std::f64::consts::PI;

/// The learning rate at optimizer step `step` (0-based) of `total` steps.
pub fn lr_at(step: usize, total: usize, peak: f64, min: f64, warmup: usize) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / decay_steps as f64).min(1.0);
    min + 0.5 * (peak - min) * (1.0 + (PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_the_floor() {
        let lr = |s| lr_at(s, 110, 1e-3, 1e-4, 10);
        assert!((lr(0) - 1e-4).abs() < 1e-12);
        assert!((lr(9) - 1e-3).abs() < 1e-12);
        assert!((lr(10) - 1e-3).abs() < 1e-12);
        assert!((lr(60) - 5.5e-4).abs() < 1e-9);
        assert!((lr(110) - 1e-4).abs() < 1e-12);
        assert!((1..110).all(|s| lr(s) <= lr(s - 1) || s < 10));
    }
}
