//! Row-wise and element-wise kernels of the fused block: LayerNorm, the MLP activations, column
//! sums, and a vectorizable `exp`/`erf` (libm's scalar `erff` was 6% of a training step).

use rayon::prelude::*;

use crate::core::Activation;

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

/// `erf(x)` as `x · P(x²) / Q(x²)`, `P` and `Q` of degree 5, with `x` clamped to ±4 (beyond
/// it erf rounds to ±1 in f32). The coefficients are a weighted least-squares fit made for this
/// crate: absolute error 2e-8 in exact arithmetic, about 3e-7 in f32 (tested). Ten fused
/// multiply-adds and one division, and no `exp`: GELU's forward pass is about three times
/// cheaper than through Abramowitz and Stegun 7.1.26, which needs `e^{-x²}`.
#[inline(always)]
pub(super) fn erf(x: f32) -> f32 {
    const P: [f32; 6] = [
        1.128_379,
        0.196_249_56,
        0.053_467_177,
        0.004_003_54,
        0.000_288_017_04,
        1.974_558_7e-6,
    ];
    const Q: [f32; 6] = [
        1.0,
        0.507_252_8,
        0.116_476_31,
        0.015_444_266,
        0.001_216_290_9,
        3.747_672_2e-5,
    ];
    let x = x.clamp(-4.0, 4.0);
    let t = x * x;
    (x * horner(&P, t) / horner(&Q, t)).clamp(-1.0, 1.0)
}

/// `c[0] + c[1]·t + c[2]·t² + ...` in fused multiply-adds.
#[inline(always)]
fn horner(c: &[f32], t: f32) -> f32 {
    c.iter().rev().fold(0.0, |acc, &c| acc.mul_add(t, c))
}

/// `tanh(x)` through `exp`, saturating cleanly for large `|x|`.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_CUBIC: f32 = 0.044_715;

/// Runs `f` compiled for AVX-512 or AVX2 when the CPU has it: vectorized 16- or 8-wide
/// instead of baseline x86-64's 4. Pass `#[inline(always)]` closures, or `f` stays a baseline
/// function. Every build does the same IEEE operations in the same order (no FMA
/// contraction, reductions in [`LANES`] fixed partial sums), so the results are identical.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f")]
            fn avx512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            // SAFETY: the CPU supports AVX2 (checked above).
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
const ELEMENTS_PER_TASK: usize = 1 << 14;

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

/// The activation `act(pre)`, element-wise, in parallel.
pub(crate) fn activate(act: Activation, pre: &[f32]) -> Vec<f32> {
    build(pre.len(), ELEMENTS_PER_TASK, |i, out| {
        let pre = &pre[i * ELEMENTS_PER_TASK..][..out.len()];
        simd(
            #[inline(always)]
            || activate_chunk(act, pre, out),
        )
    })
}

#[inline(always)]
fn activate_chunk(act: Activation, pre: &[f32], out: &mut [f32]) {
    match act {
        Activation::Gelu => {
            for (o, &x) in out.iter_mut().zip(pre) {
                *o = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
        Activation::GeluTanh => {
            for (o, &x) in out.iter_mut().zip(pre) {
                *o = 0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)));
            }
        }
        Activation::SquaredRelu => {
            for (o, &x) in out.iter_mut().zip(pre) {
                let r = x.max(0.0);
                *o = r * r;
            }
        }
    }
}

/// The activation's backward: `grad` (d loss / d act(pre)) becomes d loss / d pre, in place.
pub(super) fn activate_backward(act: Activation, pre: &[f32], grad: &mut [f32]) {
    grad.par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(pre.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|(grad, pre)| {
            simd(
                #[inline(always)]
                || activate_backward_chunk(act, pre, grad),
            )
        });
}

#[inline(always)]
fn activate_backward_chunk(act: Activation, pre: &[f32], grad: &mut [f32]) {
    match act {
        Activation::Gelu => {
            // d/dx [x Φ(x)] = Φ(x) + x φ(x), with φ(x) = e^{-x²/2} / √(2π).
            const INV_SQRT_2PI: f32 = 0.398_942_3;
            for (g, &x) in grad.iter_mut().zip(pre) {
                let erf = erf(x * std::f32::consts::FRAC_1_SQRT_2);
                *g *= 0.5 * (1.0 + erf) + x * exp(-0.5 * x * x) * INV_SQRT_2PI;
            }
        }
        Activation::GeluTanh => {
            for (g, &x) in grad.iter_mut().zip(pre) {
                let th = tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x));
                let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * x * x);
                *g *= 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du;
            }
        }
        Activation::SquaredRelu => {
            for (g, &x) in grad.iter_mut().zip(pre) {
                *g *= 2.0 * x.max(0.0);
            }
        }
    }
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

/// LayerNorm's backward for the input: `residual` plus d loss / d x, given `dout` (d loss /
/// d out). The residual is the gradient that reaches the norm's input along the skip path.
pub(super) fn layer_norm_backward(
    dout: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    residual: &[f32],
) -> Vec<f32> {
    let d = gamma.len();
    let task = ROWS_PER_TASK * d;
    build(dout.len(), task, |i, dx| {
        let at = i * task..i * task + dx.len();
        let (dout, xhat, residual) = (&dout[at.clone()], &xhat[at.clone()], &residual[at]);
        let rstd = &rstd[i * ROWS_PER_TASK..];
        simd(
            #[inline(always)]
            || {
                let mut g = vec![0.0f32; d];
                let rows = dx.chunks_mut(d).zip(dout.chunks(d)).zip(xhat.chunks(d));
                for ((((dx, dout), xhat), residual), &rstd) in
                    rows.zip(residual.chunks(d)).zip(rstd)
                {
                    // With g = dout · gamma: dx = rstd · (g - mean(g) - x̂ · mean(g · x̂)).
                    for ((g, o), w) in g.iter_mut().zip(dout).zip(gamma) {
                        *g = o * w;
                    }
                    let mean_g = sum(&g) / d as f32;
                    let mean_gx = dot(&g, xhat) / d as f32;
                    for (((dx, g), h), r) in dx.iter_mut().zip(&g).zip(xhat).zip(residual) {
                        *dx = r + rstd * (g - mean_g - h * mean_gx);
                    }
                }
            },
        )
    })
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
