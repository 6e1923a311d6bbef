//! Global-norm gradient clipping, as torch's `clip_grad_norm_`: all gradients are scaled by
//! one factor so their joint L2 norm is at most `max_norm`. (burn's built-in clipping works
//! per parameter tensor, which changes the update direction.)

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;

use super::shards::Scale;
use crate::core::sum_of_squares;

/// Scales `grads` so their global L2 norm is at most `max_norm`; returns the norm before.
pub fn clip_global_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64) -> f32 {
    let mut flattened = Flattened {
        grads,
        parts: Vec::new(),
    };
    model.visit(&mut flattened);
    let parts = flattened.parts;
    if parts.is_empty() {
        return 0.0;
    }
    let norm = match sum_of_squares(&parts) {
        Some(sum) => sum.sqrt() as f32,
        None => {
            let squares = parts.iter().map(|g| g.clone().square().sum()).collect();
            Tensor::cat(squares, 0).sum().into_scalar::<f32>().sqrt()
        }
    };
    drop(parts); // the views share the gradients' buffers; without them, scaling is in place
    if max_norm > 0.0 && norm as f64 > max_norm {
        let factor = max_norm / (norm as f64 + 1e-6);
        model.visit(&mut Scale { grads, factor });
    }
    norm
}

/// Every gradient, flattened.
struct Flattened<'a> {
    grads: &'a GradientsParams,
    parts: Vec<Tensor<1>>,
}

impl ModuleVisitor for Flattened<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let n = g.shape().num_elements();
            self.parts.push(g.reshape([n]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Distribution;

    /// Every gradient of `linear`'s weight and bias, in that order.
    fn values(linear: &Linear, grads: &GradientsParams) -> Vec<f64> {
        let weight = grads.get::<2>(linear.weight.id).expect("weight gradient");
        let bias = grads.get::<1>(linear.bias.as_ref().unwrap().id);
        let mut all = weight.into_data().try_to_vec::<f32>().unwrap();
        all.extend(
            bias.expect("bias gradient")
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
        );
        all.into_iter().map(f64::from).collect()
    }

    #[test]
    fn one_factor_scales_every_gradient_to_the_max_norm() {
        let device = crate::default_device().autodiff();
        let linear = LinearConfig::new(5, 3).init(&device);
        let x = Tensor::<2>::random([4, 5], Distribution::Normal(0.0, 1.0), &device);
        let loss = linear.forward(x).powi_scalar(2).sum() * 10.0;
        let mut grads = GradientsParams::from_grads(loss.backward(), &linear);
        let before = values(&linear, &grads);
        let want = before.iter().map(|g| g * g).sum::<f64>().sqrt();
        assert!(
            want > 1.0,
            "the test needs a norm above the max, got {want}"
        );

        let norm = clip_global_norm(&linear, &mut grads, 0.5) as f64;
        assert!((norm - want).abs() < 1e-5 * want, "norm {norm} != {want}");
        for (after, before) in values(&linear, &grads).iter().zip(&before) {
            let scaled = before * 0.5 / want;
            assert!((after - scaled).abs() < 1e-5, "{after} != {scaled}");
        }
        let clipped = values(&linear, &grads);
        let norm = clip_global_norm(&linear, &mut grads, 1.0) as f64;
        assert!(
            (norm - 0.5).abs() < 1e-5,
            "the clipped norm is the max, got {norm}"
        );
        assert_eq!(
            values(&linear, &grads),
            clipped,
            "below the max nothing changes"
        );
    }
}
