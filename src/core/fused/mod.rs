//! Hand-differentiated autodiff nodes for training on the CPU backend: a whole Transformer
//! block, the final LayerNorm, a categorical head with its cross-entropy, SiLU, and the flow
//! head's conditioned MLP block; and the squared norm of the gradients, for clipping.
//!
//! burn differentiates the block op by op: every element-wise step is its own pass over memory
//! with its own graph node, and exact GELU runs libm's scalar `erff`. Measured on nanoGPT's CPU
//! config, that spent more than half of each step outside the matrix products. Here the whole
//! block is one autodiff node: the forward pass runs the products through `gemm` with
//! transposes as strides, the row-wise and element-wise work in parallel chunks, and keeps the
//! activations it needs; the backward pass computes every gradient by hand (`block.rs`).
//!
//! Used under autodiff on the CPU backend (`Flex`), for learned and rotary positions alike
//! (`rotary.rs`); everything else takes the op-by-op path, which the tests compare these with.
//! With dropout, the block draws the op-by-op block's masks, in its order, from the same seeded
//! generator (`crate::rng`), so a run's losses do not depend on which path ran. Without
//! autodiff on the CPU, SiLU and the conditioned MLP block run the same kernels as plain
//! functions (the flow head's sampling), linear layers with several rows run on the fused
//! products ([`forward_linear`]), and one-sequence decoding ([`super::Transformer`]) reuses
//! the LayerNorm and activation kernels.

pub(crate) mod activation;
mod attention;
mod block;
mod conditioned_mlp;
#[cfg(test)]
mod dropout_tests;
mod gemm;
mod head;
pub(crate) mod kernels;
mod norm;
mod rotary;
mod silu;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

use crate::core::Activation;
use attention::Heads;
use block::{BlockShape, Dropout, Params, Saved};
pub(crate) use conditioned_mlp::ConditionedMlp;
pub(crate) use head::cross_entropy_sum;
pub(crate) use norm::layer_norm;
pub(crate) use rotary::Rotary;
pub(crate) use silu::silu;

/// The autodiff CPU backend the fused block runs on.
type Ad = Autodiff<Flex, NoCheckpointing>;

/// A float tensor of [`Ad`], as the autodiff graph sees it.
pub(crate) type Tracked = FloatTensor<Ad>;

/// `t` as an autodiff CPU tensor, or `None` on any other backend.
pub(crate) fn tracked<const D: usize>(t: Tensor<D>) -> Option<Tracked> {
    let t = t.try_into_primitive::<Ad>().ok()?;
    (t.primitive().dtype() == DType::F32).then_some(t)
}

/// `t` as a contiguous f32 tensor of the plain CPU backend, or `None` for any other tensor
/// (autodiff, another backend, another dtype).
pub(crate) fn plain<const D: usize>(t: Tensor<D>) -> Option<FlexTensor> {
    let t = t.try_into_primitive::<Flex>().ok()?;
    (t.dtype() == DType::F32).then(|| t.to_contiguous())
}

/// `layer.forward(x)`: for a plain CPU f32 tensor through [`linear_rows`], for any other
/// (autodiff, another backend) through burn's `Linear::forward`.
pub(crate) fn forward_linear<const D: usize>(layer: &burn::nn::Linear, x: Tensor<D>) -> Tensor<D> {
    linear_rows(layer, &x).unwrap_or_else(|| layer.forward(x))
}

/// `layer.forward(x)` for a plain CPU f32 tensor of any rank (rows of its last dimension),
/// through the fused products: rows split over the thread pool, the bias added in place
/// (burn adds it in a second pass); `None` for any other tensor.
fn linear_rows<const D: usize>(layer: &burn::nn::Linear, x: &Tensor<D>) -> Option<Tensor<D>> {
    let (input, weight) = (plain(x.clone())?, plain(layer.weight.val())?);
    let bias = match &layer.bias {
        Some(b) => Some(plain(b.val())?),
        None => None,
    };
    let [d_in, d_out] = [weight.layout().shape()[0], weight.layout().shape()[1]];
    let mut shape = input.layout().shape().clone();
    if shape[D - 1] != d_in {
        return None; // burn's forward reports the mismatch
    }
    let rows = (0..D - 1).map(|i| shape[i]).product();
    let x_mat = gemm::Mat::new(values(&input), rows, d_in);
    let w_mat = gemm::Mat::new(values(&weight), d_in, d_out);
    let out = gemm::product(x_mat, w_mat, bias.as_ref().map(values), None);
    shape[D - 1] = d_out;
    Some(Tensor::from_primitive::<Flex>(flex(out, shape)))
}

/// Elements per parallel task of [`sum_of_squares`].
const SQUARES_PER_TASK: usize = 1 << 14;

/// `Σ x²` over every element of `tensors`, when all are f32 tensors on the CPU backend (as
/// gradients are when training there); `None` otherwise. One parallel pass over fixed
/// chunks, whose sums are added in order, so the result does not depend on the thread count.
pub(crate) fn sum_of_squares(tensors: &[Tensor<1>]) -> Option<f64> {
    let tensors: Vec<FlexTensor> = tensors
        .iter()
        .map(|t| plain(t.clone()))
        .collect::<Option<_>>()?;
    let chunks: Vec<&[f32]> = tensors
        .iter()
        .flat_map(|t| values(t).chunks(SQUARES_PER_TASK))
        .collect();
    let sums: Vec<f32> = chunks
        .par_iter()
        .map(|c| {
            kernels::simd(
                #[inline(always)]
                || kernels::dot(c, c),
            )
        })
        .collect();
    Some(sums.iter().map(|&s| s as f64).sum())
}

/// One block's input and parameters, as [`tracked`] tensors, in the slots of `block::Params`
/// (biases `None` in a model without biases).
pub(crate) struct BlockInputs {
    pub x: Tracked,
    pub params: [Option<Tracked>; 12],
    pub heads: usize,
    pub activation: Activation,
    /// Rotary positions, in a model with them (tables for the input's length).
    pub rotary: Option<Arc<Rotary>>,
    /// The dropout probability, and the device the masks are drawn for ([`crate::rng::mask`],
    /// which draws the op-by-op block's masks too).
    pub dropout: (f64, Device),
}

/// The block's output, registered in the autodiff graph with a hand-written backward step.
pub(crate) fn block(inputs: BlockInputs) -> Tensor<3> {
    let dims = inputs.x.primitive().layout().shape().to_vec();
    let [batch, len, d] = [dims[0], dims[1], dims[2]];
    let d_ff = inputs.params[block::FC_IN]
        .as_ref()
        .map_or(0, |w| w.primitive().layout().shape()[1]);
    let shape = BlockShape {
        heads: Heads {
            batch,
            len,
            d,
            heads: inputs.heads,
        },
        d_ff,
    };
    let (prob, device) = inputs.dropout;
    let setup = Setup {
        present: (0..12).filter(|&i| inputs.params[i].is_some()).collect(),
        shape,
        activation: inputs.activation,
        rotary: inputs.rotary,
        dropout: (prob > 0.0).then(|| dropout_masks(shape, prob, &device)),
    };
    let mut nodes = vec![inputs.x];
    nodes.extend(inputs.params.into_iter().flatten());
    let output = match nodes.len() {
        13 => register::<13>(nodes, setup),
        7 => register::<7>(nodes, setup),
        n => unreachable!("a block has 6 or 12 parameters, not {}", n - 1),
    };
    Tensor::from_primitive::<Ad>(output)
}

/// The backward step's state: the parameters (shared, not copied) and saved activations.
#[derive(Clone, Debug)]
struct State(Arc<StateInner>);

#[derive(Debug)]
struct StateInner {
    /// Parameter slot of each graph parent after the input.
    present: Vec<usize>,
    params: Vec<FlexTensor>,
    shape: BlockShape,
    activation: Activation,
    rotary: Option<Arc<Rotary>>,
    dropout: Option<Dropout>,
    saved: Saved,
}

/// The parameters' values in their slots.
fn params<'a>(
    present: &[usize],
    tensors: &'a [FlexTensor],
    activation: Activation,
    rotary: Option<&'a Rotary>,
) -> Params<'a> {
    let mut slots = [None; 12];
    for (&slot, t) in present.iter().zip(tensors) {
        slots[slot] = Some(values(t));
    }
    Params {
        tensors: slots,
        activation,
        rotary,
    }
}

#[derive(Debug)]
struct BlockBackward;

impl<const N: usize> Backward<Flex, N> for BlockBackward {
    type State = State;

    fn backward(self, ops: Ops<State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = &ops.state.0;
        let dout = grads.consume::<Flex>(&ops.node).to_contiguous();
        let mut wanted = [false; 12];
        for (&slot, parent) in state.present.iter().zip(&ops.parents[1..]) {
            wanted[slot] = parent.is_some();
        }
        let g = block::backward(
            &params(
                &state.present,
                &state.params,
                state.activation,
                state.rotary.as_deref(),
            ),
            state.shape,
            &state.saved,
            state.dropout.as_ref(),
            values(&dout),
            wanted,
        );
        let dims = |t: &FlexTensor| t.layout().shape().clone();
        if let Some(x) = &ops.parents[0] {
            grads.register::<Flex>(x.id, flex(g.x, dims(&dout)));
        }
        let mut params = g.params;
        for ((&slot, parent), p) in state
            .present
            .iter()
            .zip(&ops.parents[1..])
            .zip(&state.params)
        {
            if let (Some(node), Some(grad)) = (parent, params[slot].take()) {
                grads.register::<Flex>(node.id, flex(grad, dims(p)));
            }
        }
    }
}

/// Fresh 0/1 masks for one forward pass with dropout probability `prob`.
fn dropout_masks(shape: BlockShape, prob: f64, device: &Device) -> Dropout {
    let keep = 1.0 - prob;
    let draw = |n: usize| crate::rng::mask(n, keep, device);
    let Heads {
        batch,
        len,
        d,
        heads,
    } = shape.heads;
    Dropout {
        keep: keep as f32,
        attn: draw(batch * heads * len * len),
        proj: draw(batch * len * d),
        mlp: draw(batch * len * d),
    }
}

/// What a block's node is built with besides its tensors.
struct Setup {
    /// Parameter slot of each graph parent after the input.
    present: Vec<usize>,
    shape: BlockShape,
    activation: Activation,
    rotary: Option<Arc<Rotary>>,
    dropout: Option<Dropout>,
}

fn register<const N: usize>(nodes: Vec<Tracked>, setup: Setup) -> Tracked {
    let Setup {
        present,
        shape,
        activation,
        rotary,
        dropout,
    } = setup;
    let guards: [_; N] = nodes
        .iter()
        .map(|t| t.node())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap_or_else(|_| unreachable!("N matches the node count"));
    let x = nodes[0].primitive().to_contiguous();
    let tensors: Vec<FlexTensor> = nodes[1..]
        .iter()
        .map(|t| t.primitive().to_contiguous())
        .collect();
    let block_params = params(&present, &tensors, activation, rotary.as_deref());
    let (out, saved) = block::forward(&block_params, shape, values(&x), dropout.as_ref());
    let out = flex(out, x.layout().shape().clone());
    let state = StateInner {
        present,
        params: tensors,
        shape,
        activation,
        rotary,
        dropout,
        saved,
    };
    node(BlockBackward, guards, State(Arc::new(state)), out)
}

/// `out` as the output of a graph node with these parents, whose backward pass is `step` with
/// `state`; a plain value when no parent is tracked.
fn node<const N: usize, S: Backward<Flex, N>>(
    step: S,
    parents: [NodeGuard; N],
    state: S::State,
    out: FlexTensor,
) -> Tracked {
    match step
        .prepare::<NoCheckpointing>(parents)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// The elements of a contiguous f32 tensor.
fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice().expect("a contiguous f32 tensor")
}

fn flex(data: Vec<f32>, shape: burn::tensor::Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}
