//! One pre-norm Transformer block, forward and backward, on plain f32 slices:
//! `x1 = x + proj(attn(norm1(x)))`, `out = x1 + fc_out(act(fc_in(norm2(x1))))`.
//!
//! The backward pass follows the forward in reverse, as llm.c does for GPT-2.

use super::activation::{activate, activate_backward};
use super::attention::{attention, attention_backward, mask_in_place, Heads};
use super::gemm::{self, product, Mat};
use super::kernels::{layer_norm, layer_norm_grads};
use super::rotary::Rotary;
use crate::core::Activation;

/// The block's parameters. Each layer takes two slots, its weight (or LayerNorm scale) and then
/// its bias, `None` in a model without biases; the layers in order are `norm_attn`, `attn.qkv`,
/// `attn.proj`, `norm_mlp`, `mlp.fc_in`, `mlp.fc_out` (the weight slots below).
pub(super) struct Params<'a> {
    pub tensors: [Option<&'a [f32]>; 12],
    pub activation: Activation,
    /// Rotary positions for the queries and keys, in a model with them.
    pub rotary: Option<&'a Rotary>,
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

/// The 0/1 dropout masks of one forward pass, and the chance of keeping an element (kept
/// ones are divided by it), as the op-by-op block applies dropout: to the attention
/// probabilities and to the outputs of the attention and the MLP, before the residual adds.
#[derive(Debug)]
pub(super) struct Dropout {
    pub keep: f32,
    /// `[batch, heads, len, len]`
    pub attn: Vec<f32>,
    /// `[batch·len, d]`
    pub proj: Vec<f32>,
    /// `[batch·len, d]`
    pub mlp: Vec<f32>,
}

/// Activations the backward pass reads.
#[derive(Debug)]
pub(super) struct Saved {
    xhat1: Vec<f32>,
    rstd1: Vec<f32>,
    norm1: Vec<f32>,
    /// After the rotation, in a model with rotary positions.
    qkv: Vec<f32>,
    probs: Vec<f32>,
    /// The probabilities after dropout, in a block with dropout.
    dropped: Option<Vec<f32>>,
    attended: Vec<f32>,
    xhat2: Vec<f32>,
    rstd2: Vec<f32>,
    norm2: Vec<f32>,
    pre: Vec<f32>,
    act: Vec<f32>,
}

/// The forward pass of `x` (`[batch·len, d]`): the output, and what the backward pass needs.
pub(super) fn forward(
    p: &Params,
    s: BlockShape,
    x: &[f32],
    dropout: Option<&Dropout>,
) -> (Vec<f32>, Saved) {
    let d = s.heads.d;
    let (norm1, xhat1, rstd1) = layer_norm(x, d, p.get(NORM1), p.bias(NORM1));
    let mut qkv = p.linear(QKV, &norm1, d, None);
    if let Some(rotary) = p.rotary {
        rotary.rotate(&mut qkv, s.heads, false);
    }
    let attn_mask = dropout.map(|m| (&m.attn[..], m.keep));
    let (attended, probs, dropped) = attention(&qkv, s.heads, attn_mask);
    let proj_mask = dropout.map(|m| (&m.proj[..], m.keep));
    let x1 = residual_branch(p, PROJ, &attended, d, x, proj_mask);
    let (norm2, xhat2, rstd2) = layer_norm(&x1, d, p.get(NORM2), p.bias(NORM2));
    let pre = p.linear(FC_IN, &norm2, d, None);
    let act = activate(p.activation, &pre);
    let mlp_mask = dropout.map(|m| (&m.mlp[..], m.keep));
    let out = residual_branch(p, FC_OUT, &act, s.d_ff, &x1, mlp_mask);
    let saved = Saved {
        xhat1,
        rstd1,
        norm1,
        qkv,
        probs,
        dropped,
        attended,
        xhat2,
        rstd2,
        norm2,
        pre,
        act,
    };
    (out, saved)
}

/// `residual + dropout(x · W + b)` for the linear layer at slot `i`.
fn residual_branch(
    p: &Params,
    i: usize,
    x: &[f32],
    d_in: usize,
    residual: &[f32],
    mask: Option<(&[f32], f32)>,
) -> Vec<f32> {
    let Some((mask, keep)) = mask else {
        return p.linear(i, x, d_in, Some(residual));
    };
    let mut y = p.linear(i, x, d_in, None);
    mask_in_place(&mut y, mask, keep);
    for (y, r) in y.iter_mut().zip(residual) {
        *y += r;
    }
    y
}

/// `grad` through a dropout mask, or `grad` itself without one.
fn through_mask<'a>(grad: &'a [f32], mask: Option<(&[f32], f32)>) -> std::borrow::Cow<'a, [f32]> {
    match mask {
        None => grad.into(),
        Some((mask, keep)) => {
            let mut g = grad.to_vec();
            mask_in_place(&mut g, mask, keep);
            g.into()
        }
    }
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
    dropout: Option<&Dropout>,
    dout: &[f32],
    wanted: [bool; 12],
) -> Grads {
    let d = s.heads.d;
    let mut params: [Option<Vec<f32>>; 12] = Default::default();
    // MLP: out = x1 + dropout(act(norm2 · W_in + b_in) · W_out + b_out).
    let dmlp = through_mask(dout, dropout.map(|m| (&m.mlp[..], m.keep)));
    let mut dact = slot_linear_backward(p, FC_OUT, &saved.act, &dmlp, s.d_ff, wanted, &mut params);
    activate_backward(p.activation, &saved.pre, &mut dact);
    let dnorm2 = slot_linear_backward(p, FC_IN, &saved.norm2, &dact, d, wanted, &mut params);
    let dx1 = slot_norm_backward(
        p,
        NORM2,
        &dnorm2,
        &saved.xhat2,
        &saved.rstd2,
        wanted,
        &mut params,
        dout,
    );
    // Attention: x1 = x + dropout(attn(norm1 · W_qkv + b_qkv) · W_proj + b_proj).
    let dproj = through_mask(&dx1, dropout.map(|m| (&m.proj[..], m.keep)));
    let dattended = slot_linear_backward(p, PROJ, &saved.attended, &dproj, d, wanted, &mut params);
    let attn_dropout = dropout.zip(saved.dropped.as_deref());
    let attn_dropout = attn_dropout.map(|(m, dropped)| (&m.attn[..], m.keep, dropped));
    let mut dqkv = attention_backward(&saved.qkv, &saved.probs, attn_dropout, &dattended, s.heads);
    if let Some(rotary) = p.rotary {
        rotary.rotate(&mut dqkv, s.heads, true);
    }
    let dnorm1 = slot_linear_backward(p, QKV, &saved.norm1, &dqkv, d, wanted, &mut params);
    let dx = slot_norm_backward(
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
fn slot_linear_backward(
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
    let (x, w) = (Mat::new(x, rows, d_in), Mat::new(w, d_in, d_out));
    let g = gemm::linear_backward(x, w, dy, wanted[i], wanted[i + 1]);
    (grads[i], grads[i + 1]) = (g.weight, g.bias);
    g.input
}

/// For the LayerNorm at slot `i`: stores dgamma and dbeta when wanted, returns `residual`
/// plus dx.
#[allow(clippy::too_many_arguments)]
fn slot_norm_backward(
    p: &Params,
    i: usize,
    dout: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    wanted: [bool; 12],
    grads: &mut [Option<Vec<f32>>; 12],
    residual: &[f32],
) -> Vec<f32> {
    let want = (wanted[i], wanted[i + 1]);
    let g = layer_norm_grads(dout, (xhat, rstd), p.get(i), Some(residual), want);
    (grads[i], grads[i + 1]) = (g.weight, g.bias);
    g.input
}
