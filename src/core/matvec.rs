//! One-row layers (linear, LayerNorm) on raw rows, for decoding on the CPU backend.
//!
//! Decoding one position at a time multiplies a single row by every weight matrix, so it is
//! bound by how fast the weights stream from memory. burn stores a linear layer's weight
//! input-major (`[d_in, d_out]`), which a one-row product can only read as `y += xᵢ · wᵢ`,
//! row after row, loading and storing `y` for every row. A large matrix is instead read from an
//! output-major copy (`[d_out, d_in]`) that the layer's cache makes on its first decoding step
//! ([`LayerCache::output_major`]): each output is then one dot product over a contiguous run
//! of weights, with its partial sums in registers, and the outputs are cut into blocks that
//! the calling thread and the spinning decode helper ([`super::spin`]) claim in turn. On the
//! 2-core machine this decodes nanoGPT-big 1.06-1.21x faster than the input-major walk (the
//! median ratios of three sets of rounds in turn), copy included. Small matrices, which stay
//! in cache and would not repay a copy, run on the calling thread four rows at a time.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use super::cache::LayerCache;
use super::fused::kernels::{dot, simd};

/// Weights (elements) below which a matrix runs on one thread in burn's layout: the
/// nanoGPT-small matrices (at most 65k) stay there, the nanoGPT-big ones (147k-590k) are
/// copied output-major and shared between two threads.
const MIN_PARALLEL_ELEMENTS: usize = 1 << 17;

/// `layer.forward` of one row held in a slice, or `None` when a parameter is not a contiguous
/// f32 tensor on the CPU backend. A large weight matrix is read from its output-major copy in
/// `cache`, made on first use.
pub(crate) fn linear_row(layer: &Linear, x: &[f32], cache: &mut LayerCache) -> Option<Vec<f32>> {
    let [k, n] = layer.weight.dims();
    if x.len() != k {
        return None;
    }
    let weight = flex_f32(layer.weight.val())?;
    let bias = optional_flex(layer.bias.as_ref().map(|b| b.val()))?;
    let (w, bias) = (contiguous(&weight)?, optional_slice(&bias)?);
    if bias.is_some_and(|b| b.len() != n) {
        return None; // burn's forward reports the mismatch
    }
    let mut y = match bias {
        Some(b) => b.to_vec(),
        None => vec![0.0; n],
    };
    if k * n < MIN_PARALLEL_ELEMENTS {
        simd(
            #[inline(always)]
            || four_rows(x, w, &mut y),
        );
    } else {
        dot_products(
            x,
            cache.output_major(layer.weight.id, &weight, w, n),
            &mut y,
        );
    }
    Some(y)
}

/// `norm.forward` of one row held in a slice, or `None` off the CPU backend. The core's norms
/// use burn's default epsilon, as the fused kernels do.
pub(crate) fn layer_norm_row(norm: &LayerNorm, x: &[f32]) -> Option<Vec<f32>> {
    let gamma = flex_f32(norm.gamma.val())?;
    let beta = optional_flex(norm.beta.as_ref().map(|b| b.val()))?;
    let beta = optional_slice(&beta)?;
    let (out, _, _) = super::fused::kernels::layer_norm(x, x.len(), contiguous(&gamma)?, beta);
    Some(out)
}

/// The elements of a one-row f32 tensor on the CPU backend.
pub(crate) fn row_values<const D: usize>(x: Tensor<D>) -> Option<Vec<f32>> {
    let flex = flex_f32(x)?;
    contiguous(&flex).map(<[f32]>::to_vec)
}

fn flex_f32<const D: usize>(t: Tensor<D>) -> Option<FlexTensor> {
    let t = t.try_into_primitive::<Flex>().ok()?;
    (t.dtype() == burn::tensor::DType::F32).then_some(t)
}

/// An optional parameter on the CPU backend: `Some(None)` when absent, `None` elsewhere.
fn optional_flex<const D: usize>(t: Option<Tensor<D>>) -> Option<Option<FlexTensor>> {
    match t {
        Some(t) => Some(Some(flex_f32(t)?)),
        None => Some(None),
    }
}

/// The elements of an optional contiguous tensor: `Some(None)` when absent.
fn optional_slice(t: &Option<FlexTensor>) -> Option<Option<&[f32]>> {
    match t {
        Some(t) => contiguous(t).map(Some),
        None => Some(None),
    }
}

/// The elements of a contiguous tensor, in order.
fn contiguous(t: &FlexTensor) -> Option<&[f32]> {
    let layout = t.layout();
    if !layout.is_contiguous() {
        return None;
    }
    let start = layout.start_offset();
    t.storage::<f32>()
        .get(start..start + layout.shape().num_elements())
}

/// `x += y`, element-wise.
pub(crate) fn add_to(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
}

/// Output blocks a large product is cut into. The two threads claim blocks in turn, so one
/// that runs slower takes fewer.
const BLOCKS: usize = 4;

/// `y += x · w` for a large matrix given output-major (`wt`: `[y.len(), x.len()]`): the outputs
/// are cut into [`BLOCKS`] blocks, shared out between the calling thread and the spinning
/// decode helper when two or more threads are allowed. Each output is one dot product on one
/// thread, so the result is the same bits whatever the thread count.
fn dot_products(x: &[f32], wt: &[f32], y: &mut [f32]) {
    let k = x.len();
    assert_eq!(
        wt.len(),
        k * y.len(),
        "output-major weights are not [{}, {k}]",
        y.len()
    );
    let per_block = y.len().div_ceil(BLOCKS).max(1);
    let blocks: Vec<Mutex<&mut [f32]>> = y.chunks_mut(per_block).map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Relaxed);
        let Some(block) = blocks.get(i) else { break };
        let mut out = block.lock().expect("no block's product panicked");
        let start = i * per_block * k;
        dot_rows(&wt[start..start + out.len() * k], x, &mut out);
    };
    match rayon::current_num_threads() {
        1 => work(),
        _ => super::spin::join(work, work),
    }
}

/// `y[j] += wⱼ · x` for every output `j`, `wt` being `[y.len(), x.len()]` row-major, each
/// through [`dot_wide`] (or its AVX-512 twin: the same bits).
fn dot_rows(wt: &[f32], x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked above).
        unsafe { avx512::dot_rows(wt, x, y) };
        return;
    }
    simd(
        #[inline(always)]
        || {
            for (y, w) in y.iter_mut().zip(wt.chunks_exact(x.len())) {
                *y += dot_wide(w, x);
            }
        },
    );
}

/// Floats one step of [`dot_wide`] reads from each operand: four groups of 16 lanes.
const STEP: usize = 64;

/// `w · x`: 4 × 16 partial sums of fused multiply-adds over the leading multiple of
/// [`STEP`], the four groups added lane by lane, `(g₀ + g₁) + (g₂ + g₃)`, the 16 lanes
/// folded in halves (lane `l` plus lane `l + 8`, then `l + 4`, `l + 2`, `l + 1`), and the
/// rest through [`dot`]. Inlined into each [`simd`] variant; [`avx512::dot_rows`] does the
/// same operations in the same order.
#[inline(always)]
fn dot_wide(w: &[f32], x: &[f32]) -> f32 {
    let wide = w.len() - w.len() % STEP;
    let mut acc = [[0.0f32; 16]; 4];
    for (w, x) in w[..wide]
        .chunks_exact(STEP)
        .zip(x[..wide].chunks_exact(STEP))
    {
        for (g, acc) in acc.iter_mut().enumerate() {
            for (l, acc) in acc.iter_mut().enumerate() {
                *acc = w[16 * g + l].mul_add(x[16 * g + l], *acc);
            }
        }
    }
    let mut lanes: [f32; 16] =
        std::array::from_fn(|l| (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]));
    for half in [8, 4, 2, 1] {
        for l in 0..half {
            lanes[l] += lanes[l + half];
        }
    }
    let mut total = lanes[0];
    if wide < w.len() {
        total += dot(&w[wide..], &x[wide..]);
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::STEP;

    /// [`super::dot_rows`] with [`super::dot_wide`]'s operations in intrinsics: the compiler's
    /// own fold of the 16 lanes took as many instructions as a 384-wide dot product, and read
    /// the weights 20% slower (a two-thread stream over the nanoGPT-big shapes, 6 rounds in
    /// turn).
    #[target_feature(enable = "avx512f")]
    pub(super) fn dot_rows(wt: &[f32], x: &[f32], y: &mut [f32]) {
        let k = x.len();
        let wide = k - k % STEP;
        for (y, w) in y.iter_mut().zip(wt.chunks_exact(k)) {
            let mut acc = [_mm512_setzero_ps(); 4];
            for (w, x) in w[..wide]
                .chunks_exact(STEP)
                .zip(x[..wide].chunks_exact(STEP))
            {
                for (g, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: each chunk holds STEP = 4 × 16 floats, so lanes 16g..16g + 16
                    // are inside it.
                    let (a, b) = unsafe {
                        (
                            _mm512_loadu_ps(w.as_ptr().add(16 * g)),
                            _mm512_loadu_ps(x.as_ptr().add(16 * g)),
                        )
                    };
                    *acc = _mm512_fmadd_ps(a, b, *acc);
                }
            }
            let lanes = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            let mut total = fold(lanes);
            if wide < k {
                total += super::dot(&w[wide..], &x[wide..]);
            }
            *y += total;
        }
    }

    /// The 16 lanes folded in halves: lane `l` plus lane `l + 8`, then `l + 4`, `l + 2`, `l + 1`.
    #[target_feature(enable = "avx512f")]
    fn fold(lanes: __m512) -> f32 {
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(lanes)));
        let eight = _mm256_add_ps(_mm512_castps512_ps256(lanes), high);
        let four = _mm_add_ps(
            _mm256_castps256_ps128(eight),
            _mm256_extractf128_ps::<1>(eight),
        );
        let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
        _mm_cvtss_f32(_mm_add_ss(two, _mm_movehdup_ps(two)))
    }
}

/// `w` (`[k, n]` row-major) output-major: `[n, k]`, made in parallel blocks of outputs.
pub(crate) fn output_major(w: &[f32], k: usize, n: usize) -> Vec<f32> {
    /// Outputs per task, and inputs per tile within it: a tile reads 16 rows of 64 contiguous
    /// weights and writes 64 runs of 16.
    const OUTPUTS: usize = 64;
    const INPUTS: usize = 16;
    assert_eq!(w.len(), k * n, "weights are not [{k}, {n}]");
    if w.is_empty() {
        return Vec::new();
    }
    let mut t = Vec::with_capacity(w.len());
    t.spare_capacity_mut()[..w.len()]
        .par_chunks_mut(OUTPUTS * k)
        .enumerate()
        .for_each(|(block, rows)| {
            let first = block * OUTPUTS;
            for start in (0..k).step_by(INPUTS) {
                let inputs = start..(start + INPUTS).min(k);
                for (j, row) in rows.chunks_exact_mut(k).enumerate() {
                    for (out, i) in row[inputs.clone()].iter_mut().zip(inputs.clone()) {
                        out.write(w[i * n + first + j]);
                    }
                }
            }
        });
    // SAFETY: the blocks cover the first `w.len()` = `n · k` elements (`n` outputs of `k`
    // each), and every element of every block was written above.
    unsafe { t.set_len(w.len()) };
    t
}

/// `y += x · w` with `w` `[x.len(), y.len()]` row-major, four rows at a time
/// (`y += x₀w₀ + x₁w₁ + x₂w₂ + x₃w₃`), so `y` is loaded and stored once per four rows;
/// inlined into each [`simd`] variant.
#[inline(always)]
fn four_rows(x: &[f32], w: &[f32], y: &mut [f32]) {
    let n = y.len();
    let group = 4 * n;
    let groups = w.chunks_exact(group);
    let tail = groups.remainder();
    for (rows, xs) in groups.zip(x.chunks_exact(4)) {
        let (w0, rest) = rows.split_at(n);
        let (w1, rest) = rest.split_at(n);
        let (w2, w3) = rest.split_at(n);
        let [x0, x1, x2, x3] = [xs[0], xs[1], xs[2], xs[3]];
        for ((((y, a), b), c), d) in y.iter_mut().zip(w0).zip(w1).zip(w2).zip(w3) {
            *y += x0 * a + x1 * b + x2 * c + x3 * d;
        }
    }
    for (row, &xi) in tail.chunks_exact(n).zip(&x[x.len() - x.len() % 4..]) {
        for (y, a) in y.iter_mut().zip(row) {
            *y += xi * a;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;

    #[test]
    fn one_row_matches_burns_linear() {
        let device = crate::default_device();
        // Output-major copies (the first two; 1000 inputs leave a tail of 40 beyond the
        // 64-wide steps), and one thread in burn's layout (the last two).
        let shapes = [
            (384, 1152, true),
            (1000, 200, false),
            (96, 384, true),
            (7, 5, true),
        ];
        for (d_in, d_out, bias) in shapes {
            let layer = LinearConfig::new(d_in, d_out).with_bias(bias).init(&device);
            let x = Tensor::<3>::random([1, 1, d_in], burn::tensor::Distribution::Default, &device);
            let plain = layer.forward(x.clone()).into_data();
            let x = row_values(x).unwrap();
            let mut cache = LayerCache::default();
            let fast = linear_row(&layer, &x, &mut cache).unwrap();
            let again = linear_row(&layer, &x, &mut cache).unwrap(); // from the kept copy
            assert_eq!(fast, again);
            let fast = TensorData::new(fast, [1, 1, d_out]);
            fast.assert_approx_eq::<f32>(&plain, burn::tensor::Tolerance::absolute(1e-5));
        }
    }

    /// A cache meets the same parameter with other values (a model updated in between, or a
    /// twin whose parameters share the ids): it copies the weight again.
    #[test]
    fn a_changed_weight_is_copied_again() {
        let device = crate::default_device();
        let layer = LinearConfig::new(384, 512).init(&device);
        let x = Tensor::<3>::random([1, 1, 384], burn::tensor::Distribution::Default, &device);
        let mut cache = LayerCache::default();
        let row = row_values(x.clone()).unwrap();
        linear_row(&layer, &row, &mut cache).unwrap();
        let mut twin = layer.clone();
        let doubled = layer.weight.val() * 2.0;
        twin.weight = burn::module::Param::initialized(layer.weight.id, doubled);
        let fast = linear_row(&twin, &row, &mut cache).unwrap();
        let plain = twin.forward(x).into_data();
        let fast = TensorData::new(fast, [1, 1, 512]);
        fast.assert_approx_eq::<f32>(&plain, burn::tensor::Tolerance::absolute(1e-5));
    }

    #[test]
    fn output_major_is_the_transpose() {
        let (k, n) = (5, 131); // more outputs than one copying task takes
        let w: Vec<f32> = (0..k * n).map(|i| i as f32).collect();
        let t = output_major(&w, k, n);
        for i in 0..k {
            for j in 0..n {
                assert_eq!(t[j * k + i], w[i * n + j], "({i}, {j})");
            }
        }
    }

    #[test]
    fn both_walks_sum_every_weight_once() {
        // Sums of whole numbers, exact in f32. Output-major: 1001 inputs leave a tail beyond
        // the 64-wide steps and 203 outputs a short last block. Four rows at a time: 103
        // inputs leave rows that do not fill a group of four.
        for (k, n) in [(1000, 200), (1001, 203), (100, 200), (103, 200)] {
            let w: Vec<f32> = (0..k * n).map(|i| (i % n) as f32).collect();
            let expected: Vec<f32> = (0..n).map(|j| 0.5 + (k * j) as f32).collect();
            let mut y = vec![0.5; n];
            dot_products(&vec![1.0; k], &output_major(&w, k, n), &mut y);
            assert_eq!(y, expected, "output-major, k = {k}");
            let mut y = vec![0.5; n];
            four_rows(&vec![1.0; k], &w, &mut y);
            assert_eq!(y, expected, "four rows, k = {k}");
        }
    }

    /// The AVX-512 kernel and the portable one (any other CPU) give the same bits.
    #[test]
    fn output_major_products_give_the_same_bits_on_every_cpu() {
        let value = |i: usize| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5;
        for k in [384, 1000, 40] {
            let (w, x): (Vec<f32>, Vec<f32>) = (
                (0..k * 9).map(value).collect(),
                (0..k).map(|i| value(3 * i + 1)).collect(),
            );
            let portable: Vec<f32> = w.chunks_exact(k).map(|w| 0.25 + dot_wide(w, &x)).collect();
            let mut y = vec![0.25; 9];
            dot_rows(&w, &x, &mut y);
            assert_eq!(y, portable, "k = {k}");
        }
    }

    /// Each output is one dot product on one thread, so a seed decodes the same text whatever
    /// `--threads` says.
    #[test]
    fn output_major_products_give_the_same_bits_on_one_thread_and_on_two() {
        let (k, n) = (768, 384);
        let value = |i: usize| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5;
        let w = output_major(&(0..k * n).map(value).collect::<Vec<_>>(), k, n);
        let x: Vec<f32> = (0..k).map(|i| value(i * 31 + 5)).collect();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
            let mut y = vec![0.0; n];
            pool.unwrap().install(|| dot_products(&x, &w, &mut y));
            y
        };
        assert_eq!(on(1), on(2));
    }
}
