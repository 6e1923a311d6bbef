//! Strided f32 matrix products through the `gemm` crate (the kernels burn's CPU backend uses),
//! with transposes as stride swaps, never copies.

use super::kernels::{build, column_sums, LayerGrads};

/// A read-only matrix view: element `(i, j)` is `data[offset + i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    data: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `rows × cols` matrix filling `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix size");
        Self::strided(data, 0, rows, cols, cols, 1)
    }

    /// A view with explicit offset and strides, checked against `data`'s length.
    pub fn strided(
        data: &'a [f32],
        offset: usize,
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Self {
        if rows > 0 && cols > 0 {
            assert!(
                offset + (rows - 1) * rs + (cols - 1) * cs < data.len(),
                "view out of bounds"
            );
        }
        Self {
            data,
            offset,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The transpose (a stride swap).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Rows `start..start + len`.
    pub fn row_range(self, start: usize, len: usize) -> Self {
        Self::strided(
            self.data,
            self.offset + start * self.rs,
            len,
            self.cols,
            self.rs,
            self.cs,
        )
    }

    fn ptr(&self) -> *const f32 {
        self.data[self.offset..].as_ptr()
    }
}

/// `out = a · b` (or `out += a · b` when `accumulate`), where `out` is a row-major
/// `a.rows × b.cols` block starting at `out[offset]` with row stride `out_rs`. One thread.
pub(super) fn matmul_into(
    a: Mat,
    b: Mat,
    out: &mut [f32],
    offset: usize,
    out_rs: usize,
    accumulate: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        offset + (m - 1) * out_rs + n <= out.len(),
        "output out of bounds"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                out[offset + i * out_rs..][..n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: every index the product touches lies inside the three slices (asserted above and
    // in `Mat::strided`), and `out` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out[offset..].as_mut_ptr(),
            1,
            out_rs as isize,
            accumulate,
            a.ptr(),
            a.cs as isize,
            a.rs as isize,
            b.ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Below this many multiply-adds a product runs on one thread.
const PARALLEL_WORK: usize = 1 << 18;

/// `residual + a · b + bias` (each term optional; `bias` is added to every row) as a new
/// row-major `a.rows × b.cols` matrix whose rows are split over the thread pool. Each task sets
/// up its own rows just before its product adds to them ([`build`]). The split depends only on
/// the shape and the thread count, so a run is deterministic.
pub(super) fn product(a: Mat, b: Mat, bias: Option<&[f32]>, residual: Option<&[f32]>) -> Vec<f32> {
    product_in(rayon::current_num_threads(), a, b, bias, residual)
}

/// `a₁ · b₁` and `a₂ · b₂` at once, each on half the thread pool: two products of about the
/// same work (a linear layer's weight and input gradients) split no rows on two threads, so
/// neither packs the other's operands again, and they share one fork and join.
pub(super) fn product_pair(first: (Mat, Mat), second: (Mat, Mat)) -> (Vec<f32>, Vec<f32>) {
    let threads = rayon::current_num_threads();
    let half = (threads / 2).max(1);
    rayon::join(
        || product_in(half, first.0, first.1, None, None),
        || {
            product_in(
                threads.saturating_sub(half).max(1),
                second.0,
                second.1,
                None,
                None,
            )
        },
    )
}

/// The backward pass of `y = x · W + b` (`x` `[rows, d_in]`, `w` `[d_in, d_out]`) given
/// `dy` (d loss / d y); the weight's gradient and the input's run side by side
/// ([`product_pair`]).
pub(super) fn linear_backward(
    x: Mat,
    w: Mat,
    dy: &[f32],
    want_weight: bool,
    want_bias: bool,
) -> LayerGrads {
    let dy_mat = Mat::new(dy, x.rows, w.cols);
    let bias = want_bias.then(|| column_sums(dy, None, w.cols));
    if !want_weight {
        let input = product(dy_mat, w.t(), None, None);
        return LayerGrads {
            input,
            weight: None,
            bias,
        };
    }
    let (weight, input) = product_pair((x.t(), dy_mat), (dy_mat, w.t()));
    LayerGrads {
        input,
        weight: Some(weight),
        bias,
    }
}

/// [`product`] with its rows split into at most `tasks` parallel tasks.
fn product_in(
    tasks: usize,
    a: Mat,
    b: Mat,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let (m, n) = (a.rows, b.cols);
    assert!(bias.is_none_or(|b| b.len() == n), "bias size");
    assert!(residual.is_none_or(|r| r.len() == m * n), "residual size");
    let rows = if tasks == 1 || m * n * a.cols < PARALLEL_WORK || m < 2 * tasks {
        m
    } else {
        m.div_ceil(tasks)
    };
    build(m * n, rows * n, |i, chunk| {
        if let Some(residual) = residual {
            chunk.copy_from_slice(&residual[i * rows * n..][..chunk.len()]);
        }
        if let Some(bias) = bias {
            for row in chunk.chunks_mut(n) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            }
        }
        let accumulate = bias.is_some() || residual.is_some();
        matmul_into(
            a.row_range(i * rows, chunk.len() / n),
            b,
            chunk,
            0,
            n,
            accumulate,
        );
    })
}
