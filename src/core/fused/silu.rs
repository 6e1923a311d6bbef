//! SiLU (`x · sigmoid(x)`) on the CPU backend with the vectorized kernels of `activation.rs`,
//! and under autodiff as one graph node. burn runs it as a sigmoid (libm's scalar `expf`) and
//! a product, each a node of its own: about a quarter of the audio recipe's training step, in
//! its flow head.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;

use super::activation::{silu as silu_values, silu_backward};
use super::{flex, node, plain, tracked, values, Ad};

/// `x · sigmoid(x)`, element-wise: for f32 tensors on the CPU backend with the kernels of
/// `activation.rs` (one graph node under autodiff), for anything else with burn's ops.
pub(crate) fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if let Some(t) = tracked(x.clone()) {
        let input = t.primitive().to_contiguous();
        let out = apply(&input);
        let state = State(Arc::new(input));
        return Tensor::from_primitive::<Ad>(node(SiluBackward, [t.node()], state, out));
    }
    match plain(x.clone()) {
        Some(t) => Tensor::from_primitive::<Flex>(apply(&t)),
        None => burn::tensor::activation::silu(x),
    }
}

/// SiLU of a CPU tensor, as a new contiguous tensor of its shape.
fn apply(x: &FlexTensor) -> FlexTensor {
    let x = x.to_contiguous();
    flex(silu_values(values(&x)), x.layout().shape().clone())
}

/// The backward step's state: the input.
#[derive(Clone, Debug)]
struct State(Arc<FlexTensor>);

#[derive(Debug)]
struct SiluBackward;

impl Backward<Flex, 1> for SiluBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let Some(parent) = &ops.parents[0] else {
            return;
        };
        let mut dx = values(&grad).to_vec();
        silu_backward(values(&ops.state.0), &mut dx);
        grads.register::<Flex>(parent.id, flex(dx, grad.layout().shape().clone()));
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
