//! Row-wise and element-wise kernels of the fused nodes: LayerNorm, column sums, a
//! vectorizable `exp`, lane-wise reductions, and the parallel `build` of their outputs.

use rayon::prelude::*;

/// burn's `LayerNormConfig` default epsilon, which the core's norms use.
pub(super) const NORM_EPS: f32 = 1e-5;

/// Rows per parallel task in the row-wise kernels.
const ROWS_PER_TASK: usize = 16;

/// `e^x` for f32 to about 2 ulp: `2^n · p(r)` with `r = x - n·ln 2`, `|r| ≤ ln2/2`, and a
/// degree-7 Taylor polynomial, in fused multiply-adds. Branch-free (the round-to-nearest and
/// `2^n` use the 1.5·2²³ trick), so loops over it vectorize inside [`simd`].
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let shifted = x.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = shifted - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let p = horner(
        &[
            1.0,
            1.0,
            0.5,
            1.0 / 6.0,
            1.0 / 24.0,
            1.0 / 120.0,
            1.0 / 720.0,
            1.0 / 5040.0,
        ],
        r,
    );
    // The low mantissa bits of `shifted` hold n; move n + 127 into the exponent field.
    p * f32::from_bits(shifted.to_bits().wrapping_add(127) << 23)
}

/// `c[0] + c[1]·t + c[2]·t² + ...` in fused multiply-adds.
#[inline(always)]
pub(super) fn horner(c: &[f32], t: f32) -> f32 {
    c.iter().rev().fold(0.0, |acc, &c| acc.mul_add(t, c))
}

/// Runs `f` compiled for AVX-512 or AVX2, with FMA, when the CPU has them: vectorized 16- or
/// 8-wide instead of baseline x86-64's 4. Pass `#[inline(always)]` closures, or `f` stays a
/// baseline function. Every build does the same IEEE operations in the same order (no implicit
/// FMA contraction; the kernels' explicit `mul_add`s round once on every CPU, through libm's
/// `fmaf` on one without FMA; reductions in [`LANES`] fixed partial sums), so the results are
/// identical.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        let fma = std::arch::is_x86_feature_detected!("fma");
        if fma && std::arch::is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f,fma")]
            fn avx512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU supports AVX-512F and FMA (checked above).
            return unsafe { avx512(f) };
        }
        if fma && std::arch::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2,fma")]
            fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// Lanes of the vectorizable reductions.
const LANES: usize = 8;

/// `Σ a[i] · b[i]` in [`LANES`] partial sums, so the loop vectorizes.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The largest of `a` (`-∞` when empty), in [`LANES`] partial maxima.
#[inline(always)]
pub(super) fn max(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = a.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for x in chunks {
        for i in 0..LANES {
            acc[i] = acc[i].max(x[i]);
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

/// `Σ a[i]` in [`LANES`] partial sums.
#[inline(always)]
pub(super) fn sum(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = a.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for x in chunks {
        for i in 0..LANES {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Elements per parallel task in the element-wise kernels.
pub(super) const ELEMENTS_PER_TASK: usize = 1 << 14;

/// A new vector of `len` elements, built in parallel: the task for chunk `i` (`chunk` elements,
/// the last one shorter) zeroes it and then `fill(i, chunk)` writes it.
///
/// `vec![0.0; len]` would zero the whole buffer on the calling thread while the others wait:
/// in a training step that was a fifth of the main thread's time. Here each task zeroes only
/// its own chunk, in its own cache, just before filling it.
pub(super) fn build(len: usize, chunk: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    if len == 0 {
        return Vec::new();
    }
    assert!(chunk > 0, "chunks of {len} elements need a positive size");
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, part)| {
            for v in part.iter_mut() {
                v.write(0.0);
            }
            // SAFETY: every element of `part` was initialized just above.
            let part = unsafe {
                std::slice::from_raw_parts_mut(part.as_mut_ptr().cast::<f32>(), part.len())
            };
            fill(i, part);
        });
    // SAFETY: the chunks cover `0..len`, and each task initialized its own.
    unsafe { out.set_len(len) };
    out
}

/// `len` zeros, written in parallel ([`build`]).
pub(super) fn zeroed(len: usize) -> Vec<f32> {
    build(len, ELEMENTS_PER_TASK, |_, _| {})
}

/// LayerNorm over rows of width `d`: `out = x̂ · gamma + beta` with `x̂ = (x - mean) · rstd`.
/// Also returns `x̂` and each row's `rstd` for the backward pass.
pub(crate) fn layer_norm(
    x: &[f32],
    d: usize,
    gamma: &[f32],
    beta: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let rows = x.len() / d;
    let (mut out, mut xhat, mut rstd) = (zeroed(x.len()), zeroed(x.len()), vec![0.0; rows]);
    let task = ROWS_PER_TASK * d;
    out.par_chunks_mut(task)
        .zip(xhat.par_chunks_mut(task))
        .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
        .zip(x.par_chunks(task))
        .for_each(|(((out, xhat), rstd), x)| {
            simd(
                #[inline(always)]
                || {
                    let rows = out
                        .chunks_mut(d)
                        .zip(xhat.chunks_mut(d))
                        .zip(rstd.iter_mut());
                    for (((out, xhat), rstd), x) in rows.zip(x.chunks(d)) {
                        let mean = sum(x) / d as f32;
                        for (h, v) in xhat.iter_mut().zip(x) {
                            *h = v - mean;
                        }
                        *rstd = 1.0 / (dot(xhat, xhat) / d as f32 + NORM_EPS).sqrt();
                        for h in xhat.iter_mut() {
                            *h *= *rstd;
                        }
                        match beta {
                            Some(beta) => {
                                for (((o, h), g), b) in
                                    out.iter_mut().zip(&*xhat).zip(gamma).zip(beta)
                                {
                                    *o = h * g + b;
                                }
                            }
                            None => {
                                for ((o, h), g) in out.iter_mut().zip(&*xhat).zip(gamma) {
                                    *o = h * g;
                                }
                            }
                        }
                    }
                },
            )
        });
    (out, xhat, rstd)
}

/// LayerNorm's backward for the input: d loss / d x, plus `residual` if any, given `dout`
/// (d loss / d out). The residual is the gradient that reaches the norm's input along the skip
/// path; each task copies its rows of it into place first, as [`super::gemm::product`] does.
fn layer_norm_backward(
    dout: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let d = gamma.len();
    let task = ROWS_PER_TASK * d;
    build(dout.len(), task, |i, dx| {
        let at = i * task..i * task + dx.len();
        if let Some(residual) = residual {
            dx.copy_from_slice(&residual[at.clone()]);
        }
        let (dout, xhat) = (&dout[at.clone()], &xhat[at]);
        let rstd = &rstd[i * ROWS_PER_TASK..];
        simd(
            #[inline(always)]
            || {
                let mut g = vec![0.0f32; d];
                let rows = dx.chunks_mut(d).zip(dout.chunks(d)).zip(xhat.chunks(d));
                for (((dx, dout), xhat), &rstd) in rows.zip(rstd) {
                    // With g = dout · gamma: dx = rstd · (g - mean(g) - x̂ · mean(g · x̂)).
                    for ((g, o), w) in g.iter_mut().zip(dout).zip(gamma) {
                        *g = o * w;
                    }
                    let mean_g = sum(&g) / d as f32;
                    let mean_gx = dot(&g, xhat) / d as f32;
                    for ((dx, g), h) in dx.iter_mut().zip(&g).zip(xhat) {
                        *dx += rstd * (g - mean_g - h * mean_gx);
                    }
                }
            },
        )
    })
}

/// The gradients of a layer (linear or LayerNorm): d loss / d input, and d loss / d weight
/// (or scale) and d loss / d bias where wanted.
pub(super) struct LayerGrads {
    pub input: Vec<f32>,
    pub weight: Option<Vec<f32>>,
    pub bias: Option<Vec<f32>>,
}

/// The backward pass of a LayerNorm with scale `gamma` given `dout`, from the forward pass's
/// `x̂` and `rstd`; `residual` is added to the input's gradient ([`layer_norm_backward`]).
pub(super) fn layer_norm_grads(
    dout: &[f32],
    (xhat, rstd): (&[f32], &[f32]),
    gamma: &[f32],
    residual: Option<&[f32]>,
    (want_gamma, want_beta): (bool, bool),
) -> LayerGrads {
    let d = gamma.len();
    LayerGrads {
        weight: want_gamma.then(|| column_sums(dout, Some(xhat), d)),
        bias: want_beta.then(|| column_sums(dout, None, d)),
        input: layer_norm_backward(dout, xhat, rstd, gamma, residual),
    }
}

/// Column sums of a row-major matrix of width `d`, or with `weights`, of the element-wise
/// product: `Σ_rows a[r, :] · w[r, :]` (LayerNorm's gamma gradient). Rows are summed in fixed
/// blocks and the blocks in order, so the result does not depend on the thread count.
pub(super) fn column_sums(a: &[f32], weights: Option<&[f32]>, d: usize) -> Vec<f32> {
    const BLOCK: usize = 64;
    let partial = |(i, block): (usize, &[f32])| {
        simd(
            #[inline(always)]
            || {
                let mut sums = vec![0.0f32; d];
                for (r, row) in block.chunks(d).enumerate() {
                    match weights {
                        Some(w) => {
                            let w = &w[(i * BLOCK + r) * d..][..d];
                            for ((s, a), w) in sums.iter_mut().zip(row).zip(w) {
                                *s += a * w;
                            }
                        }
                        None => {
                            for (s, a) in sums.iter_mut().zip(row) {
                                *s += a;
                            }
                        }
                    }
                }
                sums
            },
        )
    };
    let partials: Vec<Vec<f32>> = a.par_chunks(BLOCK * d).enumerate().map(partial).collect();
    let mut total = vec![0.0; d];
    for p in partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}
