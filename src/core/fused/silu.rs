//! SiLU (`x · sigmoid(x)`) on the CPU backend, element-wise in parallel with a vectorized
//! `exp`, and under autodiff as one graph node. burn runs it as a sigmoid (libm's scalar
//! `expf`) and a product, each a node of its own: about a quarter of the audio recipe's
//! training step, in its flow head.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use super::kernels::{build, exp, simd, ELEMENTS_PER_TASK};
use super::{flex, node, tracked, values, Ad};

/// `x · sigmoid(x)`, element-wise: for f32 tensors on the CPU backend with this module's
/// kernels (one graph node under autodiff), for anything else with burn's ops.
pub(crate) fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if let Some(t) = tracked(x.clone()) {
        let input = t.primitive().to_contiguous();
        let out = flex(forward(values(&input)), input.layout().shape().clone());
        let state = State(Arc::new(input));
        return Tensor::from_primitive::<Ad>(node(SiluBackward, [t.node()], state, out));
    }
    match x.clone().try_into_primitive::<Flex>() {
        Ok(t) if t.dtype() == DType::F32 => {
            let t = t.to_contiguous();
            let out = flex(forward(values(&t)), t.layout().shape().clone());
            Tensor::from_primitive::<Flex>(out)
        }
        _ => burn::tensor::activation::silu(x),
    }
}

/// `1 / (1 + e^-x)`
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

fn forward(x: &[f32]) -> Vec<f32> {
    build(x.len(), ELEMENTS_PER_TASK, |i, out| {
        let x = &x[i * ELEMENTS_PER_TASK..][..out.len()];
        simd(
            #[inline(always)]
            || {
                for (o, &x) in out.iter_mut().zip(x) {
                    *o = x * sigmoid(x);
                }
            },
        )
    })
}

/// The backward step's state: the input.
#[derive(Clone, Debug)]
struct State(Arc<FlexTensor>);

#[derive(Debug)]
struct SiluBackward;

impl Backward<Flex, 1> for SiluBackward {
    type State = State;

    /// d/dx [x s(x)] = s (1 + x (1 - s)), with s = sigmoid(x).
    fn backward(self, ops: Ops<State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let mut grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let Some(parent) = &ops.parents[0] else {
            return;
        };
        let x = values(&ops.state.0);
        let mut dx = values(&grad).to_vec();
        dx.par_chunks_mut(ELEMENTS_PER_TASK)
            .zip(x.par_chunks(ELEMENTS_PER_TASK))
            .for_each(|(g, x)| {
                simd(
                    #[inline(always)]
                    || {
                        for (g, &x) in g.iter_mut().zip(x) {
                            let s = sigmoid(x);
                            *g *= s * (1.0 + x * (1.0 - s));
                        }
                    },
                )
            });
        grad = flex(dx, grad.layout().shape().clone());
        grads.register::<Flex>(parent.id, grad);
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn silu_matches_burn_ops_in_value_and_gradient() {
        let device = crate::default_device().autodiff();
        let x = Tensor::<2>::random([37, 300], Distribution::Normal(0.0, 4.0), &device);
        // Past exp's clamp at ±87 as well.
        let far = Tensor::<2>::from_data([[-200.0f32, -90.0, 90.0, 300.0]], &device);
        let x = Tensor::cat(vec![x.narrow(1, 0, 296), far.repeat_dim(0, 37)], 1).require_grad();
        assert!(tracked(x.clone()).is_some(), "the fused path runs");
        let weights = Tensor::<2>::random([37, 300], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let y = if fused {
                silu(x.clone())
            } else {
                burn::tensor::activation::silu(x.clone())
            };
            let grads = (y.clone() * weights.clone()).sum().backward();
            let dx = x.grad(&grads).expect("x is tracked");
            let to_vec = |t: Tensor<2>| t.into_data().try_into_vec::<f32>().unwrap();
            (to_vec(y.inner()), to_vec(dx))
        };
        let ((y, dx), (want_y, want_dx)) = (run(true), run(false));
        let close = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(a, b)| (a - b).abs() <= 1e-5 * b.abs().max(1.0))
        };
        assert!(close(&y, &want_y), "values");
        assert!(close(&dx, &want_dx), "gradients");
        // Without autodiff: the plain CPU path.
        let plain = silu(x.clone().inner()).into_data().try_into_vec::<f32>();
        assert!(close(&plain.unwrap(), &want_y), "values without autodiff");
    }
}
