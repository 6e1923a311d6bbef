//! A categorical output head and its cross-entropy as one autodiff node: `logits = h · wᵀ`,
//! `loss = Σ_rows (logsumexp(logits_row) - logits_row[target])`.
//!
//! burn runs the same as a product, a log-softmax of half a dozen element-wise passes, a
//! gather, a sum, and the backward of each. On nanoGPT's CPU config those took about 5% of a
//! training step, for about 0.5% of its multiply-adds. Here the forward pass keeps the softmax
//! probabilities, and the backward pass is `dlogits = p - onehot(target)` followed by the two
//! products of the weight and input gradients, side by side.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;
use rayon::prelude::*;

use super::gemm::{product, product_pair, Mat};
use super::kernels::{exp, max, simd, sum};
use super::{flex, node, tracked, values, Ad};

/// Rows per parallel task of the softmax.
const ROWS_PER_TASK: usize = 32;

/// The summed cross-entropy (nats) of `targets` under `logits = h · wᵀ`, as one node of the
/// autodiff graph, when `h` and `w` are f32 tensors under autodiff on the CPU backend; `None`
/// elsewhere.
///
/// # Shapes
/// - `h`: `[N, D]`, `w`: `[V, D]`, `targets`: `[N]`, ids below `V`; returns `[1]`.
pub(crate) fn cross_entropy_sum(
    h: &Tensor<2>,
    w: &Tensor<2>,
    targets: &Tensor<1, Int>,
) -> Option<Tensor<1>> {
    let (h, w) = (tracked(h.clone())?, tracked(w.clone())?);
    let targets: Vec<usize> = targets
        .to_data()
        .iter::<i64>()
        .map(|t| usize::try_from(t).expect("token ids are not negative"))
        .collect();
    let guards = [h.node(), w.node()];
    let (h_values, w_values) = (h.primitive().to_contiguous(), w.primitive().to_contiguous());
    let d = h_values.layout().shape()[1];
    let (loss, probs) = forward(values(&h_values), values(&w_values), d, &targets);
    let out = flex(vec![loss], burn::tensor::Shape::new([1]));
    let state = StateInner {
        h: h_values,
        w: w_values,
        probs,
        targets,
    };
    let output = node(HeadBackward, guards, State(Arc::new(state)), out);
    Some(Tensor::from_primitive::<Ad>(output))
}

/// The loss, and the softmax probabilities `[N, V]` for the backward pass.
fn forward(h: &[f32], w: &[f32], d: usize, targets: &[usize]) -> (f32, Vec<f32>) {
    let (n, v) = (h.len() / d, w.len() / d);
    assert_eq!(targets.len(), n, "one target per row");
    if let Some(&bad) = targets.iter().find(|&&t| t >= v) {
        panic!("target {bad} is outside the {v} classes");
    }
    let mut probs = product(Mat::new(h, n, d), Mat::new(w, v, d).t(), None, None);
    let mut losses = vec![0.0f32; n];
    probs
        .par_chunks_mut(ROWS_PER_TASK * v)
        .zip(losses.par_chunks_mut(ROWS_PER_TASK))
        .zip(targets.par_chunks(ROWS_PER_TASK))
        .for_each(|((probs, losses), targets)| {
            simd(
                #[inline(always)]
                || {
                    let rows = probs.chunks_mut(v).zip(losses).zip(targets);
                    for ((row, loss), &target) in rows {
                        let peak = max(row);
                        let target_logit = row[target];
                        for p in row.iter_mut() {
                            *p = exp(*p - peak);
                        }
                        let total = sum(row);
                        *loss = total.ln() + peak - target_logit;
                        let inv = 1.0 / total;
                        for p in row.iter_mut() {
                            *p *= inv;
                        }
                    }
                },
            )
        });
    (losses.iter().sum(), probs)
}

/// The backward step's state: the inputs (shared, not copied), the probabilities and targets.
#[derive(Clone, Debug)]
struct State(Arc<StateInner>);

#[derive(Debug)]
struct StateInner {
    h: FlexTensor,
    w: FlexTensor,
    probs: Vec<f32>,
    targets: Vec<usize>,
}

#[derive(Debug)]
struct HeadBackward;

impl Backward<Flex, 2> for HeadBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = &ops.state.0;
        let scale = values(&grads.consume::<Flex>(&ops.node).to_contiguous())[0];
        let (h, w) = (values(&state.h), values(&state.w));
        let d = state.h.layout().shape()[1];
        let (n, v) = (h.len() / d, w.len() / d);
        // d loss / d logits = scale · (p - onehot(target)).
        let mut dlogits = state.probs.clone();
        for (row, &target) in dlogits.chunks_mut(v).zip(&state.targets) {
            row[target] -= 1.0;
            for g in row.iter_mut() {
                *g *= scale;
            }
        }
        let dlogits_mat = Mat::new(&dlogits, n, v);
        let (h_mat, w_mat) = (Mat::new(h, n, d), Mat::new(w, v, d));
        let (dw, dh) = match (&ops.parents[0], &ops.parents[1]) {
            (Some(_), Some(_)) => {
                let (dw, dh) = product_pair((dlogits_mat.t(), h_mat), (dlogits_mat, w_mat));
                (Some(dw), Some(dh))
            }
            (None, Some(_)) => (Some(product(dlogits_mat.t(), h_mat, None, None)), None),
            (Some(_), None) => (None, Some(product(dlogits_mat, w_mat, None, None))),
            (None, None) => (None, None),
        };
        let dims = |t: &FlexTensor| t.layout().shape().clone();
        if let (Some(node), Some(dh)) = (&ops.parents[0], dh) {
            grads.register::<Flex>(node.id, flex(dh, dims(&state.h)));
        }
        if let (Some(node), Some(dw)) = (&ops.parents[1], dw) {
            grads.register::<Flex>(node.id, flex(dw, dims(&state.w)));
        }
    }
}
