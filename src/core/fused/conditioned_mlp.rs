//! A pre-norm residual MLP block whose hidden layer also takes a condition,
//! `h + fc_out(silu(fc_in(norm(h)) + cond_bias(c)))`, on the fused block's kernels: the blocks of
//! the flow head (`crate::modality::flow`). burn runs one as about twenty graph nodes (the
//! LayerNorm's element-wise passes, each product and its bias, the sums), many of them on
//! one thread; here it is one node under autodiff, and plain kernels without it (sampling).

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;

use super::activation::{silu, silu_backward};
use super::gemm::{linear_backward, product, Mat};
use super::kernels::{layer_norm, layer_norm_grads};
use super::{flex, node, values, Ad};

/// The block's layers, as burn modules (each linear layer and the norm with a bias).
pub(crate) struct ConditionedMlp<'a> {
    pub norm: &'a LayerNorm,
    pub cond_bias: &'a Linear,
    pub fc_in: &'a Linear,
    pub fc_out: &'a Linear,
}

// The block's tensors in graph-parent order: its two inputs, then its parameters, each
// layer's bias right after its weight (or the norm's scale).
const H: usize = 0;
const C: usize = 1;
const GAMMA: usize = 2;
const BETA: usize = 3;
const COND: usize = 4;
const FC_IN: usize = 6;
const FC_OUT: usize = 8;
const TENSORS: usize = 10;

impl ConditionedMlp<'_> {
    /// `h + fc_out(silu(fc_in(norm(h)) + cond_bias(c)))` for f32 tensors on the CPU backend
    /// (one graph node under autodiff), with the norm's epsilon as burn's default; `None` on
    /// other backends or without every bias.
    ///
    /// # Shapes
    /// - `h`: `[N, D]`, `c`: `[N, D_cond]`; returns `[N, D]`.
    pub(crate) fn forward(&self, h: &Tensor<2>, c: &Tensor<2>) -> Option<Tensor<2>> {
        let norm_beta = self.norm.beta.as_ref()?.val();
        let bias = |l: &Linear| l.bias.as_ref().map(|b| b.val().unsqueeze::<2>());
        let matrices = [
            h.clone(),
            c.clone(),
            self.norm.gamma.val().unsqueeze(),
            norm_beta.unsqueeze(),
            self.cond_bias.weight.val(),
            bias(self.cond_bias)?,
            self.fc_in.weight.val(),
            bias(self.fc_in)?,
            self.fc_out.weight.val(),
            bias(self.fc_out)?,
        ];
        if let Some(tracked) = matrices
            .iter()
            .map(|t| super::tracked(t.clone()))
            .collect::<Option<Vec<_>>>()
        {
            let tensors = tracked.iter().map(|t| t.primitive().to_contiguous());
            let tensors: [FlexTensor; TENSORS] = array(tensors.collect());
            let (out, saved) = forward(&tensors);
            let out = flex(out, tensors[H].layout().shape().clone());
            let guards = array(tracked.iter().map(|t| t.node()).collect());
            let state = State(Arc::new(StateInner { tensors, saved }));
            let out = node(MlpBackward, guards, state, out);
            return Some(Tensor::from_primitive::<Ad>(out));
        }
        let tensors = matrices.into_iter().map(super::plain);
        let tensors: [FlexTensor; TENSORS] = array(tensors.collect::<Option<_>>()?);
        let (out, _) = forward(&tensors);
        let out = flex(out, tensors[H].layout().shape().clone());
        Some(Tensor::from_primitive::<Flex>(out))
    }
}

/// A vector of the block's [`TENSORS`] items as an array.
fn array<T>(items: Vec<T>) -> [T; TENSORS] {
    items
        .try_into()
        .unwrap_or_else(|_| unreachable!("one item per tensor of the block"))
}

/// Activations the backward pass reads.
#[derive(Debug)]
struct Saved {
    xhat: Vec<f32>,
    rstd: Vec<f32>,
    normed: Vec<f32>,
    pre: Vec<f32>,
    act: Vec<f32>,
}

/// The `[rows, cols]` matrix view of a contiguous 2-D tensor.
fn mat(t: &FlexTensor) -> Mat<'_> {
    let [rows, cols] = dims(t);
    Mat::new(values(t), rows, cols)
}

fn dims(t: &FlexTensor) -> [usize; 2] {
    let shape = t.layout().shape();
    [shape[0], shape[1]]
}

/// The forward pass: the output and what the backward pass needs.
fn forward(t: &[FlexTensor; TENSORS]) -> (Vec<f32>, Saved) {
    let v = |i: usize| values(&t[i]);
    let (normed, xhat, rstd) = layer_norm(v(H), v(GAMMA).len(), v(GAMMA), Some(v(BETA)));
    let rows = dims(&t[H])[0];
    let product_of = |x: &[f32], layer: usize, residual: Option<&[f32]>| {
        let x = Mat::new(x, rows, dims(&t[layer])[0]);
        product(x, mat(&t[layer]), Some(v(layer + 1)), residual)
    };
    let pre = product_of(&normed, FC_IN, None);
    let pre = product_of(v(C), COND, Some(&pre));
    let act = silu(&pre);
    let out = product_of(&act, FC_OUT, Some(v(H)));
    let saved = Saved {
        xhat,
        rstd,
        normed,
        pre,
        act,
    };
    (out, saved)
}

/// The backward step's state: the block's tensors (shared with the graph, not copied) and
/// the saved activations.
#[derive(Clone, Debug)]
struct State(Arc<StateInner>);

#[derive(Debug)]
struct StateInner {
    tensors: [FlexTensor; TENSORS],
    saved: Saved,
}

#[derive(Debug)]
struct MlpBackward;

impl Backward<Flex, TENSORS> for MlpBackward {
    type State = State;

    fn backward(self, ops: Ops<State, TENSORS>, grads: &mut Gradients, _: &mut Checkpointer) {
        let StateInner { tensors: t, saved } = &*ops.state.0;
        let dout = grads.consume::<Flex>(&ops.node).to_contiguous();
        let wanted = |i: usize| ops.parents[i].is_some();
        let mut found: [Option<Vec<f32>>; TENSORS] = Default::default();
        let mut linear = |x: &[f32], layer: usize, dy: &[f32]| {
            let x = Mat::new(x, dims(&t[H])[0], dims(&t[layer])[0]);
            let g = linear_backward(x, mat(&t[layer]), dy, wanted(layer), wanted(layer + 1));
            (found[layer], found[layer + 1]) = (g.weight, g.bias);
            g.input
        };
        // out = h + act · W_out + b_out, act = silu(pre).
        let mut dpre = linear(&saved.act, FC_OUT, values(&dout));
        silu_backward(&saved.pre, &mut dpre);
        // pre = normed · W_in + b_in + c · W_cond + b_cond.
        let dc = linear(values(&t[C]), COND, &dpre);
        let dnormed = linear(&saved.normed, FC_IN, &dpre);
        let want = (wanted(GAMMA), wanted(BETA));
        let stats = (&saved.xhat[..], &saved.rstd[..]);
        let gamma = values(&t[GAMMA]);
        let g = layer_norm_grads(&dnormed, stats, gamma, Some(values(&dout)), want);
        (found[GAMMA], found[BETA]) = (g.weight, g.bias);
        (found[H], found[C]) = (Some(g.input), Some(dc));
        for ((parent, grad), tensor) in ops.parents.iter().zip(found).zip(t) {
            if let (Some(parent), Some(grad)) = (parent, grad) {
                let shape = tensor.layout().shape().clone();
                grads.register::<Flex>(parent.id, flex(grad, shape));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Initializer, LayerNormConfig, LinearConfig};
    use burn::tensor::Distribution;

    use super::*;

    /// The fused block against burn's ops, in value and in the gradient of every input and
    /// parameter, with and without autodiff; and with an untracked condition and a frozen
    /// bias, whose gradients neither path gives while the others still match.
    #[test]
    fn conditioned_mlp_matches_burn_ops_in_value_and_gradients() {
        let device = crate::default_device().autodiff();
        let (rows, d, d_cond, d_ff) = (150, 24, 20, 40);
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.3,
        };
        let linear = |d_in, d_out| {
            LinearConfig::new(d_in, d_out)
                .with_initializer(init.clone())
                .init(&device)
        };
        let mut norm = LayerNormConfig::new(d).init(&device);
        // Away from the initial ones and zeros, so that a mix-up of the two would show.
        let perturb = |t: Tensor<1>| {
            let noise = Tensor::random([d], Distribution::Normal(0.0, 0.2), &device);
            (t + noise).detach().require_grad()
        };
        norm.gamma = norm.gamma.map(perturb);
        norm.beta = norm.beta.map(|b| b.map(perturb));
        let (cond, fc_in, fc_out) = (linear(d_cond, d_ff), linear(d, d_ff), linear(d_ff, d));
        let random = |shape: [usize; 2]| {
            Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad()
        };
        let (h, c, weights) = (random([rows, d]), random([rows, d_cond]), random([rows, d]));
        for all_tracked in [true, false] {
            let c = c.clone().set_require_grad(all_tracked);
            let mut cond = cond.clone();
            if !all_tracked {
                cond.bias = cond.bias.map(|b| b.set_require_grad(false));
            }
            let run = |fused: bool| {
                let out = if fused {
                    let layers = ConditionedMlp {
                        norm: &norm,
                        cond_bias: &cond,
                        fc_in: &fc_in,
                        fc_out: &fc_out,
                    };
                    layers.forward(&h, &c).expect("the fused path runs")
                } else {
                    let pre = fc_in.forward(norm.forward(h.clone())) + cond.forward(c.clone());
                    h.clone() + fc_out.forward(burn::tensor::activation::silu(pre))
                };
                let grads = (out.clone() * weights.clone()).sum().backward();
                let flat = |t: Tensor<2>| t.into_data().try_into_vec::<f32>().unwrap();
                let flat1 = |t: Tensor<1>| t.into_data().try_into_vec::<f32>().unwrap();
                let mut found = vec![
                    Some(flat(out.inner())),
                    h.grad(&grads).map(flat),
                    c.grad(&grads).map(flat),
                    norm.gamma.grad(&grads).map(flat1),
                    norm.beta.as_ref().unwrap().grad(&grads).map(flat1),
                ];
                for l in [&cond, &fc_in, &fc_out] {
                    found.push(l.weight.grad(&grads).map(flat));
                    found.push(l.bias.as_ref().unwrap().grad(&grads).map(flat1));
                }
                found
            };
            let (fused, want) = (run(true), run(false));
            let missing = want.iter().filter(|g| g.is_none()).count();
            let which: Vec<usize> = (0..want.len()).filter(|&i| want[i].is_none()).collect();
            assert_eq!(missing, if all_tracked { 0 } else { 2 }, "{which:?}");
            for (i, (a, b)) in fused.iter().zip(&want).enumerate() {
                let (Some(a), Some(b)) = (a, b) else {
                    assert!(
                        a.is_none() && b.is_none(),
                        "tensor {i}: a gradient on one path only"
                    );
                    continue;
                };
                let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                let worst = a
                    .iter()
                    .zip(b)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(
                    worst <= 1e-5 * scale,
                    "tensor {i}: off by {worst} (scale {scale})"
                );
                assert!(b.iter().any(|v| *v != 0.0), "tensor {i} is all zeros");
            }
            if !all_tracked {
                continue;
            }
            // Without autodiff: the plain CPU path.
            let plain_layers = (norm.valid(), cond.valid(), fc_in.valid(), fc_out.valid());
            let plain = ConditionedMlp {
                norm: &plain_layers.0,
                cond_bias: &plain_layers.1,
                fc_in: &plain_layers.2,
                fc_out: &plain_layers.3,
            };
            let out = plain.forward(&h.clone().inner(), &c.clone().inner());
            let out = out.expect("the plain CPU path runs").into_data();
            let out = out.try_into_vec::<f32>().unwrap();
            let want_out = want[0].as_ref().unwrap();
            let worst = out.iter().zip(want_out).map(|(a, b)| (a - b).abs());
            assert!(worst.fold(0.0, f32::max) <= 1e-5, "values without autodiff");
        }
    }
}
