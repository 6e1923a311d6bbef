//! One pre-norm Transformer block, forward and backward, on plain f32 slices:
//! `x1 = x + proj(attn(norm1(x)))`, `out = x1 + fc_out(act(fc_in(norm2(x1))))`.
//!
//! The backward pass follows the forward in reverse, as llm.c does for GPT-2.

use super::activation::{activate, activate_backward};
use super::attention::{attention, attention_backward, Heads};
use super::gemm::{product, product_pair, Mat};
use super::kernels::{column_sums, layer_norm, layer_norm_backward};
use crate::core::Activation;

/// The block's parameters. Each layer takes two slots, its weight (or LayerNorm scale) and then
/// its bias, `None` in a model without biases; the layers in order are `norm_attn`, `attn.qkv`,
/// `attn.proj`, `norm_mlp`, `mlp.fc_in`, `mlp.fc_out` (the weight slots below).
pub(super) struct Params<'a> {
    pub tensors: [Option<&'a [f32]>; 12],
    pub activation: Activation,
}

const NORM1: usize = 0;
const QKV: usize = 2;
const PROJ: usize = 4;
const NORM2: usize = 6;
pub(super) const FC_IN: usize = 8;
const FC_OUT: usize = 10;

impl Params<'_> {
    fn get(&self, i: usize) -> &[f32] {
        self.tensors[i].expect("weights and norm scales are always present")
    }

    fn bias(&self, i: usize) -> Option<&[f32]> {
        self.tensors[i + 1]
    }

    /// `residual + x · W + b` for the linear layer at slot `i`, with `x` `[rows, d_in]`.
    fn linear(&self, i: usize, x: &[f32], d_in: usize, residual: Option<&[f32]>) -> Vec<f32> {
        let w = self.get(i);
        let (rows, d_out) = (x.len() / d_in, w.len() / d_in);
        let (x, w) = (Mat::new(x, rows, d_in), Mat::new(w, d_in, d_out));
        product(x, w, self.bias(i), residual)
    }
}

/// The block's shape.
#[derive(Clone, Copy, Debug)]
pub(super) struct BlockShape {
    pub heads: Heads,
    pub d_ff: usize,
}

/// Activations the backward pass reads.
#[derive(Debug)]
pub(super) struct Saved {
    xhat1: Vec<f32>,
    rstd1: Vec<f32>,
    norm1: Vec<f32>,
    qkv: Vec<f32>,
    probs: Vec<f32>,
    attended: Vec<f32>,
    xhat2: Vec<f32>,
    rstd2: Vec<f32>,
    norm2: Vec<f32>,
    pre: Vec<f32>,
    act: Vec<f32>,
}

/// The forward pass of `x` (`[batch·len, d]`): the output, and what the backward pass needs.
pub(super) fn forward(p: &Params, s: BlockShape, x: &[f32]) -> (Vec<f32>, Saved) {
    let d = s.heads.d;
    let (norm1, xhat1, rstd1) = layer_norm(x, d, p.get(NORM1), p.bias(NORM1));
    let qkv = p.linear(QKV, &norm1, d, None);
    let (attended, probs) = attention(&qkv, s.heads);
    let x1 = p.linear(PROJ, &attended, d, Some(x));
    let (norm2, xhat2, rstd2) = layer_norm(&x1, d, p.get(NORM2), p.bias(NORM2));
    let pre = p.linear(FC_IN, &norm2, d, None);
    let act = activate(p.activation, &pre);
    let out = p.linear(FC_OUT, &act, s.d_ff, Some(&x1));
    let saved = Saved {
        xhat1,
        rstd1,
        norm1,
        qkv,
        probs,
        attended,
        xhat2,
        rstd2,
        norm2,
        pre,
        act,
    };
    (out, saved)
}

/// Gradients of the block: d loss / d x, and for each parameter slot whose `wanted` flag is
/// set, d loss / d parameter.
pub(super) struct Grads {
    pub x: Vec<f32>,
    pub params: [Option<Vec<f32>>; 12],
}

/// The backward pass, given d loss / d out.
pub(super) fn backward(
    p: &Params,
    s: BlockShape,
    saved: &Saved,
    dout: &[f32],
    wanted: [bool; 12],
) -> Grads {
    let d = s.heads.d;
    let mut params: [Option<Vec<f32>>; 12] = Default::default();
    // MLP: out = x1 + act(norm2 · W_in + b_in) · W_out + b_out.
    let mut dact = linear_backward(p, FC_OUT, &saved.act, dout, s.d_ff, wanted, &mut params);
    activate_backward(p.activation, &saved.pre, &mut dact);
    let dnorm2 = linear_backward(p, FC_IN, &saved.norm2, &dact, d, wanted, &mut params);
    let dx1 = norm_backward(
        p,
        NORM2,
        &dnorm2,
        &saved.xhat2,
        &saved.rstd2,
        wanted,
        &mut params,
        dout,
    );
    // Attention: x1 = x + attn(norm1 · W_qkv + b_qkv) · W_proj + b_proj.
    let dattended = linear_backward(p, PROJ, &saved.attended, &dx1, d, wanted, &mut params);
    let dqkv = attention_backward(&saved.qkv, &saved.probs, &dattended, s.heads);
    let dnorm1 = linear_backward(p, QKV, &saved.norm1, &dqkv, d, wanted, &mut params);
    let dx = norm_backward(
        p,
        NORM1,
        &dnorm1,
        &saved.xhat1,
        &saved.rstd1,
        wanted,
        &mut params,
        &dx1,
    );
    Grads { x: dx, params }
}

/// For `y = x · W + b` (slot `i`): stores dW and db when wanted, returns dx.
fn linear_backward(
    p: &Params,
    i: usize,
    x: &[f32],
    dy: &[f32],
    d_in: usize,
    wanted: [bool; 12],
    grads: &mut [Option<Vec<f32>>; 12],
) -> Vec<f32> {
    let w = p.get(i);
    let (rows, d_out) = (x.len() / d_in, w.len() / d_in);
    let (x, dy_mat, w) = (
        Mat::new(x, rows, d_in),
        Mat::new(dy, rows, d_out),
        Mat::new(w, d_in, d_out),
    );
    if wanted[i + 1] {
        grads[i + 1] = Some(column_sums(dy, None, d_out));
    }
    if !wanted[i] {
        return product(dy_mat, w.t(), None, None);
    }
    let (dw, dx) = product_pair((x.t(), dy_mat), (dy_mat, w.t()));
    grads[i] = Some(dw);
    dx
}

/// For the LayerNorm at slot `i`: stores dgamma and dbeta when wanted, returns `residual`
/// plus dx.
#[allow(clippy::too_many_arguments)]
fn norm_backward(
    p: &Params,
    i: usize,
    dout: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    wanted: [bool; 12],
    grads: &mut [Option<Vec<f32>>; 12],
    residual: &[f32],
) -> Vec<f32> {
    let gamma = p.get(i);
    if wanted[i] {
        grads[i] = Some(column_sums(dout, Some(xhat), gamma.len()));
    }
    if wanted[i + 1] {
        grads[i + 1] = Some(column_sums(dout, None, gamma.len()));
    }
    layer_norm_backward(dout, xhat, rstd, gamma, residual)
}
