//! Training speed: the real training loop ([`Session`]) run for a few steps on fresh weights
//! and timed phase by phase. `aigc bench train` prints it; nothing is written to disk.

use burn::prelude::*;

use super::{Session, StepTimes, TrainConfig, Trainable};
use crate::Result;

/// Timings of the measured steps of one benchmark run.
#[derive(Debug, Clone)]
pub struct TrainBench {
    /// Parameters of the model.
    pub params: usize,
    /// Units (tokens, images, clips) one step trains on.
    pub units_per_step: usize,
    /// Each measured step (warm-up steps excluded).
    pub steps: Vec<StepTimes>,
}

impl TrainBench {
    /// Median of each phase, and of whole steps as `total` (not the sum of the medians).
    pub fn median(&self) -> (StepTimes, f64) {
        let of = |f: fn(&StepTimes) -> f64| median(self.steps.iter().map(f).collect());
        let phases = StepTimes {
            forward: of(|s| s.forward),
            backward: of(|s| s.backward),
            optimizer: of(|s| s.optimizer),
        };
        (phases, of(StepTimes::total))
    }

    /// Units per second at the median step time.
    pub fn units_per_s(&self) -> f64 {
        self.units_per_step as f64 / self.median().1
    }
}

/// Trains a model built by `init` on `data` for `warmup + steps` steps with the settings of
/// `train` (its `steps` is overridden) and times the last `steps`.
pub fn bench_training<M: Trainable>(
    train: &TrainConfig,
    data: &M::Data,
    init: impl FnOnce(&Device) -> Result<M>,
    warmup: usize,
    steps: usize,
) -> Result<TrainBench> {
    let train = TrainConfig {
        steps: warmup + steps,
        ..train.clone()
    };
    train.validate()?;
    let device = crate::default_device().autodiff();
    let mut session = Session::fresh(&train, device, init)?;
    let mut measured = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let (_, times) = session.step(data)?;
        if i >= warmup {
            measured.push(times);
        }
    }
    Ok(TrainBench {
        params: session.model().num_params(),
        units_per_step: M::units_per_step(&train),
        steps: measured,
    })
}

/// The median of `values` (the mean of the middle two for an even count; 0 for none).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modality::text::{Corpus, TextModelConfig, TextTokenizer};
    use crate::train::TextData;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn times_every_measured_step_of_the_real_loop() {
        let text = "to be or not to be, that is the question\n".repeat(30);
        let tokenizer = TextTokenizer::char_level(&text).unwrap();
        let train = TrainConfig::tiny();
        let corpus = Corpus::new(&text, &tokenizer, train.seq_len, "x".as_ref()).unwrap();
        let config = TextModelConfig::tiny(tokenizer.vocab_size());
        let bench =
            bench_training(&train, &TextData::new(corpus), |d| config.init(d), 2, 5).unwrap();
        assert_eq!(bench.steps.len(), 5);
        assert_eq!(bench.units_per_step, train.batch_size * train.seq_len);
        let (phases, total) = bench.median();
        assert!(phases.forward > 0.0 && phases.backward > 0.0 && phases.optimizer > 0.0);
        assert!(total >= phases.forward && bench.units_per_s() > 0.0);
    }
}
