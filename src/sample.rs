//! Sampling the next unit from a categorical distribution: the one sampler used by the CLI,
//! the examples and the library.
//!
//! Order of operations (as in Hugging Face `transformers`' logits processors): repetition
//! penalty, temperature, then top-k, top-p (nucleus, Holtzman et al. 2019) and min-p filtering
//! of the resulting probabilities, then a draw from a seeded RNG. Temperature 0 is greedy.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Sampling controls; the defaults sample from the model's distribution unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingConfig {
    /// Seed of the sampling RNG: the same seed, prompt and model give the same output.
    pub seed: u64,
    /// Softmax temperature; 0 picks the most likely unit (greedy). Default 1.
    pub temperature: f32,
    /// Keep only the `k` most likely units; 0 disables. Default 0.
    pub top_k: usize,
    /// Keep the smallest set of units whose probabilities sum to at least `p`; 1 disables.
    pub top_p: f32,
    /// Drop units less likely than `min_p` times the most likely one; 0 disables.
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of already generated units by this
    /// (CTRL, Keskar et al. 2019); 1 disables.
    pub repetition_penalty: f32,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
        }
    }
}

impl SamplingConfig {
    /// Checks every control is in range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            ));
        }
        Ok(())
    }
}

/// A seeded sampler: the config plus its RNG state.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplingConfig,
    rng: StdRng,
}

impl Sampler {
    /// A sampler for `config` after validating it.
    pub fn new(config: SamplingConfig) -> Result<Self> {
        config.validate()?;
        let rng = StdRng::seed_from_u64(config.seed);
        Ok(Self { config, rng })
    }

    /// Picks the next unit from `logits` (`[V]`), penalising the units in `history`.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let mut logits = logits.to_vec();
        self.penalise_repeats(&mut logits, history);
        if self.config.temperature == 0.0 {
            return argmax(&logits);
        }
        let probs = self.filtered_probs(&logits);
        let total: f32 = probs.iter().map(|&(_, p)| p).sum();
        let mut u = self.rng.random::<f32>() * total;
        for &(id, p) in &probs {
            if u < p {
                return id;
            }
            u -= p;
        }
        probs.last().map_or(0, |&(id, _)| id) // rounding left u just above the total
    }

    fn penalise_repeats(&self, logits: &mut [f32], history: &[u32]) {
        let penalty = self.config.repetition_penalty;
        if penalty == 1.0 {
            return;
        }
        let mut seen = vec![false; logits.len()];
        for &id in history {
            let i = id as usize;
            if i < logits.len() && !seen[i] {
                seen[i] = true;
                logits[i] = if logits[i] > 0.0 {
                    logits[i] / penalty
                } else {
                    logits[i] * penalty
                };
            }
        }
    }

    /// Tempered probabilities, most likely first, after top-k, top-p and min-p (unnormalised).
    fn filtered_probs(&self, logits: &[f32]) -> Vec<(u32, f32)> {
        let c = &self.config;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, ((l - max) / c.temperature).exp()))
            .collect();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        if c.top_k > 0 {
            probs.truncate(c.top_k);
        }
        let total: f32 = probs.iter().map(|&(_, p)| p).sum();
        if c.top_p < 1.0 {
            let mut cumulative = 0.0;
            let keep = probs
                .iter()
                .position(|&(_, p)| {
                    cumulative += p / total;
                    cumulative >= c.top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
        }
        if c.min_p > 0.0 {
            let floor = probs[0].1 * c.min_p;
            probs.retain(|&(_, p)| p >= floor);
        }
        probs
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(f: impl FnOnce(&mut SamplingConfig)) -> Sampler {
        let mut c = SamplingConfig::default();
        f(&mut c);
        Sampler::new(c).unwrap()
    }

    fn counts(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<usize> {
        let mut counts = vec![0; logits.len()];
        for _ in 0..n {
            counts[s.sample(logits, &[]) as usize] += 1;
        }
        counts
    }

    const LOGITS: [f32; 4] = [1.0, 3.0, 2.0, 0.5];

    #[test]
    fn greedy_is_argmax() {
        let mut s = sampler(|c| c.temperature = 0.0);
        assert_eq!(s.sample(&LOGITS, &[]), 1);
        assert_eq!(argmax(&[0.0, 5.0, 5.0]), 1);
    }

    #[test]
    fn same_seed_same_draws_other_seed_differs() {
        let logits = [0.0f32; 50];
        let draws = |seed| {
            let mut s = sampler(|c| c.seed = seed);
            (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn sampling_follows_the_softmax() {
        let mut s = sampler(|_| {});
        let c = counts(&mut s, &[0.0, (3.0f32).ln()], 4000);
        let share = c[1] as f64 / 4000.0;
        assert!(
            (share - 0.75).abs() < 0.03,
            "share of the 3x token: {share}"
        );
    }

    #[test]
    fn top_k_keeps_only_the_k_best() {
        let mut s = sampler(|c| c.top_k = 2);
        let c = counts(&mut s, &LOGITS, 500);
        assert_eq!(c[0] + c[3], 0);
        assert!(c[1] > 0 && c[2] > 0);
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // softmax(LOGITS) ~ [0.08, 0.60, 0.22, 0.05]: p = 0.7 keeps tokens 1 and 2.
        let mut s = sampler(|c| c.top_p = 0.7);
        let c = counts(&mut s, &LOGITS, 500);
        assert_eq!(c[0] + c[3], 0);
        assert!(c[2] > 0);
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        // Relative to the best (e^3): token 2 is e^-1 = 0.37, token 0 is e^-2 = 0.14.
        let mut s = sampler(|c| c.min_p = 0.2);
        let c = counts(&mut s, &LOGITS, 500);
        assert_eq!(c[0] + c[3], 0);
        assert!(c[2] > 0);
    }

    #[test]
    fn repetition_penalty_can_flip_the_greedy_choice() {
        let mut s = sampler(|c| {
            c.temperature = 0.0;
            c.repetition_penalty = 2.0;
        });
        assert_eq!(s.sample(&LOGITS, &[1]), 2); // 3/2 = 1.5 < 2
        assert_eq!(s.sample(&LOGITS, &[]), 1);
    }

    #[test]
    fn invalid_controls_are_rejected() {
        for f in [
            |c: &mut SamplingConfig| c.temperature = -1.0,
            |c: &mut SamplingConfig| c.top_p = 0.0,
            |c: &mut SamplingConfig| c.min_p = 1.5,
            |c: &mut SamplingConfig| c.repetition_penalty = 0.0,
        ] {
            let mut c = SamplingConfig::default();
            f(&mut c);
            assert!(Sampler::new(c).is_err());
        }
    }
}
