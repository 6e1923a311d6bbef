//! A LayerNorm as one autodiff node, on the fused block's kernels: the core's final norm (the
//! blocks' own norms are inside the fused block). burn runs it as about ten element-wise
//! passes, each a graph node with its own backward, on one thread.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;

use super::kernels::layer_norm_grads;
use super::{flex, kernels, node, tracked, values, Ad};

/// `x̂ · gamma + beta` over the last dimension of `x`, with `x̂` normalized to zero mean and
/// unit variance (epsilon as burn's default), as one node of the autodiff graph, when the
/// tensors are f32 under autodiff on the CPU backend; `None` elsewhere.
///
/// # Shapes
/// - `x`: `[B, T, D]`, `gamma` and `beta`: `[D]`; returns `[B, T, D]`.
pub(crate) fn layer_norm(
    x: &Tensor<3>,
    gamma: &Tensor<1>,
    beta: Option<&Tensor<1>>,
) -> Option<Tensor<3>> {
    let (x, gamma) = (tracked(x.clone())?, tracked(gamma.clone())?);
    let beta = match beta {
        Some(b) => Some(tracked(b.clone())?),
        None => None,
    };
    let (x_values, gamma_values) = (
        x.primitive().to_contiguous(),
        gamma.primitive().to_contiguous(),
    );
    let beta_values = beta.as_ref().map(|b| b.primitive().to_contiguous());
    let shape = x_values.layout().shape().clone();
    let d = gamma_values.layout().shape()[0];
    assert_eq!(shape[2], d, "LayerNorm width");
    let (out, xhat, rstd) = kernels::layer_norm(
        values(&x_values),
        d,
        values(&gamma_values),
        beta_values.as_ref().map(values),
    );
    let out = flex(out, shape);
    let state = State(Arc::new(StateInner {
        gamma: gamma_values,
        xhat,
        rstd,
    }));
    let output = match beta {
        Some(beta) => node(
            NormBackward,
            [x.node(), gamma.node(), beta.node()],
            state,
            out,
        ),
        None => node(NormBackward, [x.node(), gamma.node()], state, out),
    };
    Some(Tensor::from_primitive::<Ad>(output))
}

/// The backward step's state: the scale (shared, not copied), `x̂` and each row's `rstd`.
#[derive(Clone, Debug)]
struct State(Arc<StateInner>);

#[derive(Debug)]
struct StateInner {
    gamma: FlexTensor,
    xhat: Vec<f32>,
    rstd: Vec<f32>,
}

#[derive(Debug)]
struct NormBackward;

impl<const N: usize> Backward<Flex, N> for NormBackward {
    type State = State;

    /// Parents: `x`, `gamma`, then `beta` when the norm has one.
    fn backward(self, ops: Ops<State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = &ops.state.0;
        let dout = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (dout_values, gamma) = (values(&dout), values(&state.gamma));
        let parent = |i: usize| ops.parents.get(i).and_then(Option::as_ref).map(|n| n.id);
        let want = (parent(1).is_some(), parent(2).is_some());
        let g = layer_norm_grads(dout_values, (&state.xhat, &state.rstd), gamma, None, want);
        let width = || burn::tensor::Shape::new([gamma.len()]);
        let grads_of = [
            (parent(0), Some(g.input), dout.layout().shape().clone()),
            (parent(1), g.weight, width()),
            (parent(2), g.bias, width()),
        ];
        for (id, grad, shape) in grads_of {
            if let (Some(id), Some(grad)) = (id, grad) {
                grads.register::<Flex>(id, flex(grad, shape));
            }
        }
    }
}
