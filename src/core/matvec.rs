//! One-row layers (linear, LayerNorm) on raw rows, for decoding on the CPU backend.
//!
//! Decoding one position at a time multiplies a single row by every weight matrix, so it is
//! bound by how fast the weights stream from memory. burn's matmul runs such a product on one
//! thread; here a large matrix's rows are cut into blocks that the calling thread and the
//! spinning decode helper ([`super::spin`]) claim in turn, each walking its rows as one
//! sequential stream ([`gemv`]), and the partial rows are summed in block order. On the 2-core
//! machine this streams the nanoGPT-big weights 1.2-1.7x faster. Small matrices, which stay in
//! cache, run on the calling thread four rows at a time.
//! [`linear`] sends several rows through the fused products (`fused::forward_linear`), and
//! anything else (other backends, autodiff, non-contiguous weights) through burn's own
//! `Linear::forward`; the `_row` functions return `None` for it.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn_flex::{Flex, FlexTensor};

use super::fused::kernels::simd;

/// Weights (elements) below which sharing a product with another thread costs more than it saves: the
/// nanoGPT-small matrices (at most 65k) run on one thread, the nanoGPT-big ones (147k-590k)
/// are split.
const MIN_PARALLEL_ELEMENTS: usize = 1 << 17;

/// `layer.forward(x)`, faster on the CPU backend: one row through [`matvec`], several
/// through the fused products.
///
/// # Shapes
/// - `x`: `[B, T, D_in]`; returns `[B, T, D_out]`.
pub fn linear(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, t, _] = x.dims();
    if b * t != 1 {
        return super::fused::forward_linear(layer, x);
    }
    if x.device().is_autodiff() {
        return layer.forward(x);
    }
    let weight = layer.weight.val();
    let bias = layer.bias.as_ref().map(|b| b.val());
    match row_times(&x, &weight, bias.as_ref()) {
        Some(y) => y.reshape([1, 1, weight.dims()[1]]),
        None => layer.forward(x),
    }
}

/// `x · weight + bias` for a one-row `x`, or `None` when a tensor is not a contiguous f32
/// tensor on the CPU backend.
fn row_times(x: &Tensor<3>, weight: &Tensor<2>, bias: Option<&Tensor<1>>) -> Option<Tensor<1>> {
    let x_flex = flex_f32(x.clone())?;
    let y = affine_row(contiguous(&x_flex)?, weight, bias)?;
    let n = y.len();
    Some(Tensor::from_data(TensorData::new(y, [n]), &x.device()))
}

/// `x · weight + bias` for a row given as a slice, or `None` when a parameter is not a
/// contiguous f32 tensor on the CPU backend.
fn affine_row(x: &[f32], weight: &Tensor<2>, bias: Option<&Tensor<1>>) -> Option<Vec<f32>> {
    let [k, n] = weight.dims();
    if x.len() != k {
        return None;
    }
    let w_flex = flex_f32(weight.clone())?;
    let b_flex = optional_flex(bias.cloned())?;
    let b = optional_slice(&b_flex)?;
    Some(matvec(x, contiguous(&w_flex)?, n, b))
}

/// `layer.forward` of one row held in a slice (see [`affine_row`]).
pub(crate) fn linear_row(layer: &Linear, x: &[f32]) -> Option<Vec<f32>> {
    let bias = layer.bias.as_ref().map(|b| b.val());
    affine_row(x, &layer.weight.val(), bias.as_ref())
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

/// Row blocks a split product is cut into. The two threads claim blocks in turn, so one that
/// runs slower takes fewer; the blocks' partial products are summed in block order, so the
/// result does not depend on which thread ran which block. nanoGPT-big decoding on a 2-core
/// Xeon: 2 / 4 / 8 / 16 blocks, 893-914 / 922-931 / 866-883 / 837-852 tokens/s.
const BLOCKS: usize = 4;

/// `x · w + bias`, `w` being `[x.len(), n]` row-major. Large products are cut into
/// [`BLOCKS`] row blocks, shared out between the calling thread and the spinning decode helper
/// ([`super::spin`]) when two or more threads are allowed, run in turn by the calling thread
/// otherwise; either way the partial rows are summed in block order, so the result is the
/// same bits whatever the thread count.
pub(crate) fn matvec(x: &[f32], w: &[f32], n: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let k = x.len();
    assert_eq!(w.len(), k * n, "matvec: weight is not [{k}, {n}]");
    let mut y = match bias {
        Some(b) => b.to_vec(),
        None => vec![0.0; n],
    };
    if k < BLOCKS || k * n < MIN_PARALLEL_ELEMENTS {
        let mut product = vec![0.0f32; n];
        gemv(x, w, &mut product, Walk::FourRows);
        add_to(&mut y, &product);
        return y;
    }
    let rows = k.div_ceil(BLOCKS);
    let mut partials = vec![0.0f32; BLOCKS * n];
    let blocks: Vec<Mutex<&mut [f32]>> = partials.chunks_mut(n).map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Relaxed);
        let Some(block) = blocks.get(i) else { break };
        let start = (i * rows).min(k);
        let end = (start + rows).min(k);
        let mut out = block.lock().expect("no block's product panicked");
        gemv(
            &x[start..end],
            &w[start * n..end * n],
            &mut out,
            Walk::Stream,
        );
    };
    match rayon::current_num_threads() {
        1 => work(),
        _ => super::spin::join(work, work),
    }
    drop(blocks);
    for partial in partials.chunks(n) {
        add_to(&mut y, partial);
    }
    y
}

/// `x += y`, element-wise.
pub(crate) fn add_to(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
}

/// How [`gemv`] walks the weight matrix.
#[derive(Clone, Copy)]
enum Walk {
    /// Four rows at a time (`y += x₀w₀ + x₁w₁ + x₂w₂ + x₃w₃`), so `y` is loaded and stored
    /// once per four rows: the faster walk for a matrix that stays in cache (nanoGPT-small
    /// decoding: 7,118 against 6,105 tokens/s, medians of 6 rounds in turn).
    FourRows,
    /// One row after another, a single sequential stream: the faster walk for matrices that
    /// stream from memory each token, which the hardware prefetcher follows best (nanoGPT-big
    /// decoding, 43 MB of weights: 1.12x the four-row walk's tokens/s, the median ratio of 17
    /// rounds in turn on a noisy host, 14 of them faster; software prefetching had made the
    /// four-row walk slower).
    Stream,
}

/// `y = x · w` with `w` `[x.len(), y.len()]` row-major, on the calling thread, vectorized by
/// [`simd`]. On nanoGPT-big with two threads this streams the weights faster than `gemm`'s
/// one-row path (1.27x with the four-row walk).
fn gemv(x: &[f32], w: &[f32], y: &mut [f32], walk: Walk) {
    assert_eq!(w.len(), x.len() * y.len());
    y.fill(0.0);
    if y.is_empty() {
        return;
    }
    match walk {
        Walk::FourRows => simd(
            #[inline(always)]
            || four_rows(x, w, y),
        ),
        Walk::Stream => simd(
            #[inline(always)]
            || one_row_at_a_time(x, w, y),
        ),
    }
}

/// [`Walk::FourRows`] (`y` zeroed and not empty), inlined into each [`simd`] variant.
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
    one_row_at_a_time(&x[x.len() - x.len() % 4..], tail, y);
}

/// `y += x · w` one row of `w` after another: [`Walk::Stream`], and the rows left over by
/// [`four_rows`]; inlined into each [`simd`] variant.
#[inline(always)]
fn one_row_at_a_time(x: &[f32], w: &[f32], y: &mut [f32]) {
    for (row, &xi) in w.chunks_exact(y.len()).zip(x) {
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
        for (d_in, d_out, bias) in [(384, 1152, true), (1536, 384, false), (7, 5, true)] {
            let layer = LinearConfig::new(d_in, d_out).with_bias(bias).init(&device);
            let x = Tensor::<3>::random([1, 1, d_in], burn::tensor::Distribution::Default, &device);
            let fast = linear(&layer, x.clone()).into_data();
            let plain = layer.forward(x).into_data();
            assert_eq!(fast.shape(), plain.shape());
            fast.assert_approx_eq::<f32>(&plain, burn::tensor::Tolerance::absolute(1e-5));
        }
    }

    #[test]
    fn matvec_sums_every_row_once() {
        // Above MIN_PARALLEL_ELEMENTS (split into row blocks, streamed): 1001 rows leave a
        // short last block. Below it (one thread, four rows at a time): 103 rows leave a tail
        // that does not fill a group of four.
        for (k, n) in [(1000, 200), (1001, 200), (100, 200), (103, 200)] {
            let w: Vec<f32> = (0..k * n).map(|i| (i % n) as f32).collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 / 2.0).collect();
            let y = matvec(&vec![1.0; k], &w, n, Some(&bias));
            let expected: Vec<f32> = (0..n).map(|j| (k * j) as f32 + j as f32 / 2.0).collect();
            assert_eq!(y, expected, "k = {k}");
        }
    }

    /// One thread runs the blocks in turn and sums them in the same order as two threads do,
    /// so a seed decodes the same text whatever `--threads` says.
    #[test]
    fn matvec_gives_the_same_bits_on_one_thread_and_on_two() {
        let (k, n) = (768, 384);
        let value = |i: usize| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5;
        let w: Vec<f32> = (0..k * n).map(value).collect();
        let x: Vec<f32> = (0..k).map(|i| value(i * 31 + 5)).collect();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
            pool.unwrap().install(|| matvec(&x, &w, n, None))
        };
        assert_eq!(on(1), on(2));
    }
}
