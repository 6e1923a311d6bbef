//! Causal multi-head attention over a fused q/k/v matrix, forward and backward, one batch
//! element per parallel task. The probabilities are kept for the backward pass.
//!
//! Queries go in blocks of [`BLOCK`] rows, and each block's products stop at the last key it
//! can see, so the masked upper triangle is mostly never computed (about half the work at
//! nanoGPT's context lengths).

use rayon::prelude::*;

use super::gemm::{matmul_into, Mat};
use super::kernels::{dot, exp, max, simd, sum, zeroed};

/// The attention problem's shape: `batch` sequences of `len` positions, width `d` split into
/// `heads` heads.
#[derive(Clone, Copy, Debug)]
pub(super) struct Heads {
    pub batch: usize,
    pub len: usize,
    pub d: usize,
    pub heads: usize,
}

impl Heads {
    fn head_dim(&self) -> usize {
        self.d / self.heads
    }

    /// The q, k or v block (`which` = 0, 1, 2) of head `h` in one sequence's `[len, 3d]` rows.
    fn part<'a>(&self, qkv: &'a [f32], which: usize, h: usize) -> Mat<'a> {
        let hd = self.head_dim();
        Mat::strided(qkv, which * self.d + h * hd, self.len, hd, 3 * self.d, 1)
    }
}

/// Query rows per block (the `gemm` microkernel's height).
const BLOCK: usize = 16;

/// The blocks `(start, end)` of `0..len`.
fn blocks(len: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..len)
        .step_by(BLOCK)
        .map(move |r0| (r0, (r0 + BLOCK).min(len)))
}

/// `dropout(softmax(q kᵀ / √hd + causal mask)) v` for every head. `qkv` is `[batch·len, 3d]`;
/// `dropout` is a 0/1 mask over the probabilities (`[batch, heads, len, len]`) and the chance
/// of keeping one, by which kept ones are divided. Returns the heads' outputs side by side,
/// `[batch·len, d]`, the probabilities `[batch, heads, len, len]` (zero above the diagonal),
/// and with dropout the probabilities after it.
pub(super) fn attention(
    qkv: &[f32],
    s: Heads,
    dropout: Option<(&[f32], f32)>,
) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let (t, d, hd) = (s.len, s.d, s.head_dim());
    let per_batch = s.heads * t * t;
    let scale = 1.0 / (hd as f32).sqrt();
    let (mut y, mut probs) = (zeroed(s.batch * t * d), zeroed(s.batch * per_batch));
    let mut dropped = dropout.map(|_| zeroed(s.batch * per_batch));
    let dropped_parts: Vec<Option<&mut [f32]>> = match dropped.as_mut() {
        Some(all) => all.chunks_mut(per_batch).map(Some).collect(),
        None => (0..s.batch).map(|_| None).collect(),
    };
    y.par_chunks_mut(t * d)
        .zip(probs.par_chunks_mut(per_batch))
        .zip(qkv.par_chunks(t * 3 * d))
        .zip(dropped_parts)
        .enumerate()
        .for_each(|(b, (((y, probs), qkv), mut dropped))| {
            let mask = dropout.map(|(m, keep)| (&m[b * per_batch..][..per_batch], keep));
            simd(
                #[inline(always)]
                || {
                    for (h, p) in probs.chunks_mut(t * t).enumerate() {
                        let (q, k, v) = (s.part(qkv, 0, h), s.part(qkv, 1, h), s.part(qkv, 2, h));
                        let mut dropped = dropped
                            .as_deref_mut()
                            .map(|all| &mut all[h * t * t..][..t * t]);
                        for (r0, r1) in blocks(t) {
                            // Rows r0..r1 see keys 0..r1.
                            let keys = k.row_range(0, r1).t();
                            matmul_into(q.row_range(r0, r1 - r0), keys, p, r0 * t, t, false);
                            for i in r0..r1 {
                                let row = &mut p[i * t..(i + 1) * t];
                                softmax_in_place(&mut row[..=i], scale);
                                row[i + 1..].fill(0.0);
                            }
                            let p_rows = match (dropped.as_deref_mut(), mask) {
                                (Some(out), Some((m, keep))) => {
                                    let m = &m[h * t * t..][..t * t];
                                    let rows = r0 * t..r1 * t;
                                    out[rows.clone()].copy_from_slice(&p[rows.clone()]);
                                    mask_in_place(&mut out[rows.clone()], &m[rows], keep);
                                    Mat::strided(out, r0 * t, r1 - r0, r1, t, 1)
                                }
                                _ => Mat::strided(p, r0 * t, r1 - r0, r1, t, 1),
                            };
                            matmul_into(p_rows, v.row_range(0, r1), y, r0 * d + h * hd, d, false);
                        }
                    }
                },
            )
        });
    (y, probs, dropped)
}

/// `x ← x · mask / keep`, element-wise: inverted dropout with a given 0/1 mask.
#[inline(always)]
pub(super) fn mask_in_place(x: &mut [f32], mask: &[f32], keep: f32) {
    let inv = 1.0 / keep;
    for (x, &m) in x.iter_mut().zip(mask) {
        *x *= m * inv;
    }
}

/// In place: `row ← softmax(row · scale)`. Each pass is its own loop, and the max and the sum
/// run in lanes ([`max`], [`sum`]), so all three vectorize: one loop that both exponentiated
/// and summed stayed scalar, and took about half of the attention's forward time.
#[inline(always)]
fn softmax_in_place(row: &mut [f32], scale: f32) {
    let max = max(row) * scale;
    for v in row.iter_mut() {
        *v = exp(*v * scale - max);
    }
    let inv = 1.0 / sum(row);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// The backward pass of [`attention`]: given d loss / d y (`[batch·len, d]`), the
/// probabilities, and with dropout its mask and the probabilities after it, returns
/// d loss / d qkv (`[batch·len, 3d]`).
pub(super) fn attention_backward(
    qkv: &[f32],
    probs: &[f32],
    dropout: Option<(&[f32], f32, &[f32])>,
    dy: &[f32],
    s: Heads,
) -> Vec<f32> {
    let (t, d, hd) = (s.len, s.d, s.head_dim());
    let per_batch = s.heads * t * t;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut dqkv = zeroed(s.batch * t * 3 * d);
    dqkv.par_chunks_mut(t * 3 * d)
        .zip(qkv.par_chunks(t * 3 * d))
        .zip(probs.par_chunks(per_batch))
        .zip(dy.par_chunks(t * d))
        .enumerate()
        .for_each(|(b, (((dqkv, qkv), probs), dy))| {
            let dropout = dropout.map(|(m, keep, dropped)| {
                (
                    &m[b * per_batch..][..per_batch],
                    keep,
                    &dropped[b * per_batch..][..per_batch],
                )
            });
            simd(
                #[inline(always)]
                || {
                    let mut ds = vec![0.0; t * t];
                    for (h, p) in probs.chunks(t * t).enumerate() {
                        let (q, k, v) = (s.part(qkv, 0, h), s.part(qkv, 1, h), s.part(qkv, 2, h));
                        let dy_h = Mat::strided(dy, h * hd, t, hd, d, 1);
                        for (r0, r1) in blocks(t) {
                            // dP = dy vᵀ (through the dropout mask, if any), then
                            // dS = P ∘ (dP - rowsum(P ∘ dP)) times the scale.
                            let dy_rows = dy_h.row_range(r0, r1 - r0);
                            matmul_into(dy_rows, v.row_range(0, r1).t(), &mut ds, r0 * t, t, false);
                            for i in r0..r1 {
                                let (row, p_row) =
                                    (&mut ds[i * t..(i + 1) * t], &p[i * t..=i * t + i]);
                                if let Some((m, keep, _)) = dropout {
                                    mask_in_place(&mut row[..=i], &m[h * t * t + i * t..], keep);
                                }
                                let p_dot_dp = dot(&row[..=i], p_row);
                                for (g, &p) in row.iter_mut().zip(p_row) {
                                    *g = p * (*g - p_dot_dp) * scale;
                                }
                                row[i + 1..].fill(0.0);
                            }
                            // dq = dS k.
                            let ds_rows = Mat::strided(&ds, r0 * t, r1 - r0, r1, t, 1);
                            let dq_at = r0 * 3 * d + h * hd;
                            matmul_into(ds_rows, k.row_range(0, r1), dqkv, dq_at, 3 * d, false);
                        }
                        // The probabilities v was weighted by: after dropout, if any.
                        let p = dropout.map_or(p, |(_, _, dropped)| &dropped[h * t * t..][..t * t]);
                        // Keys c0..c1 are seen by queries c0..len: dv = Pᵀ dy, dk = dSᵀ q.
                        for (c0, c1) in blocks(t) {
                            let (dy_rows, q_rows) =
                                (dy_h.row_range(c0, t - c0), q.row_range(c0, t - c0));
                            let at = c0 * 3 * d + h * hd;
                            matmul_into(
                                seen_by(p, c0, c1, t).t(),
                                dy_rows,
                                dqkv,
                                at + 2 * d,
                                3 * d,
                                false,
                            );
                            matmul_into(
                                seen_by(&ds, c0, c1, t).t(),
                                q_rows,
                                dqkv,
                                at + d,
                                3 * d,
                                false,
                            );
                        }
                    }
                },
            )
        });
    dqkv
}

/// Rows `c0..len`, columns `c0..c1` of a `[len, len]` matrix: where queries meet keys `c0..c1`.
fn seen_by(m: &[f32], c0: usize, c1: usize, len: usize) -> Mat<'_> {
    Mat::strided(m, c0 * len + c0, len - c0, c1 - c0, len, 1)
}
