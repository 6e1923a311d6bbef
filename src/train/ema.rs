//! An exponential moving average of the weights (Polyak averaging), the weights a run ships
//! and samples with: flow heads in particular draw cleaner samples from averaged weights than
//! from the last step's (as in DDPM, MAR and most diffusion models).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// Averaged weights of a model under training.
#[derive(Clone)]
pub(crate) struct Ema<M> {
    /// The averaged weights, on the plain (non-autodiff) device: averaging on the autodiff
    /// device would leave a graph entry per operation for burn to sweep at every step.
    pub model: M,
    decay: f64,
}

impl<M: Module> Ema<M> {
    /// Starts the average at `model`'s current weights.
    pub fn new(model: &M, decay: f64) -> Self {
        Self {
            model: model.valid(),
            decay,
        }
    }

    /// Moves the average towards `model` after optimizer step `step` (0-based). The decay
    /// warms up as `(1 + step) / (10 + step)`, so early averages do not remember the random
    /// initialisation.
    pub fn update(&mut self, model: &M, step: usize) {
        let decay = self.decay.min((1 + step) as f64 / (10 + step) as f64);
        let mut current = Collect::default();
        model.visit(&mut current);
        let mut blend = Blend {
            current: current.values.into_iter(),
            decay,
        };
        self.model = self.model.clone().map(&mut blend);
        assert!(
            blend.current.next().is_none(),
            "the average and the model have different parameters"
        );
    }
}

/// Every float parameter, off the autodiff device and flattened, in visiting order; none for
/// a frozen parameter, whose average stays exactly as it is.
#[derive(Default)]
struct Collect {
    values: Vec<Option<Tensor<1>>>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let trained = value.is_require_grad() || !value.device().is_autodiff();
        let n = value.shape().num_elements();
        self.values
            .push(trained.then(|| value.without_autodiff().reshape([n])));
    }
}

/// `average = decay * average + (1 - decay) * current`, parameter by parameter.
struct Blend<I> {
    current: I,
    decay: f64,
}

impl<I: Iterator<Item = Option<Tensor<1>>>> ModuleMapper for Blend<I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let current = self
            .current
            .next()
            .expect("the average and the model have different parameters");
        let Some(current) = current else {
            return param; // frozen
        };
        let decay = self.decay;
        param.map(|average| {
            let dims = average.dims();
            average * decay + current.reshape(dims) * (1.0 - decay)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    fn weight(linear: &Linear) -> Vec<f32> {
        linear.weight.val().into_data().try_into_vec().unwrap()
    }

    #[test]
    fn average_follows_the_model_with_warmed_up_decay() {
        let device = crate::default_device().autodiff();
        let model = LinearConfig::new(2, 2).init(&device);
        let start = weight(&model);
        let mut ema = Ema::new(&model, 0.999);
        // a trained parameter, as the optimizer returns it: a leaf that requires gradients
        let moved = Linear {
            weight: model
                .weight
                .clone()
                .map(|w| (w + 1.0).detach().require_grad()),
            ..model.clone()
        };
        // step 0: decay min(0.999, 1/10) = 0.1, so the average moves 90% of the way
        ema.update(&moved, 0);
        for (a, s) in weight(&ema.model).iter().zip(&start) {
            assert!((a - (s + 0.9)).abs() < 1e-6, "{a} vs {s}");
        }
        // late steps: decay 0.999, the average barely moves
        let mut late = Ema::new(&model, 0.999);
        late.update(&moved, 1_000_000);
        for (a, s) in weight(&late.model).iter().zip(&start) {
            assert!((a - (s + 0.001)).abs() < 1e-5, "{a} vs {s}");
        }
        assert!(!ema.model.weight.val().device().is_autodiff());
        // a frozen parameter (no gradients): its average stays exactly as it is
        let frozen = Linear {
            weight: moved.weight.clone().map(|w| w.set_require_grad(false)),
            ..moved
        };
        let mut still = Ema::new(&model, 0.999);
        still.update(&frozen, 0);
        assert_eq!(weight(&still.model), start);
    }
}
