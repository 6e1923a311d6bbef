//! Rotary positions inside the fused block: the queries and keys of the fused q/k/v rows are
//! rotated in place after the projection, and their gradients rotated back (the transpose of
//! a rotation is the rotation by the negative angle) before the projection's backward pass.

use rayon::prelude::*;

use super::attention::Heads;
use super::kernels::simd;

/// Rotary tables for positions `0..len` in the rotate-half layout of [`crate::core`]'s
/// `Rope`: dimension `i` of a head pairs with `i + head_dim/2`, and both turn by the angle in
/// column `i`. `cos` and `sin` are `[len, head_dim/2]`.
#[derive(Debug)]
pub(crate) struct Rotary {
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rotary {
    /// Tables `[len, head_dim/2]` of `cos` and `sin` of each position's angles.
    pub(crate) fn new(cos: Vec<f32>, sin: Vec<f32>) -> Self {
        assert_eq!(cos.len(), sin.len(), "cos and sin tables differ in size");
        Self { cos, sin }
    }

    /// Rotates the queries and keys in `qkv` (`[batch·len, 3d]`, rows at positions
    /// `0..len` per sequence) in place; by the negative angles with `inverse`, which carries
    /// their gradients back through the rotation.
    pub(super) fn rotate(&self, qkv: &mut [f32], s: Heads, inverse: bool) {
        let (len, d) = (s.len, s.d);
        let half = d / s.heads / 2;
        debug_assert_eq!(d, s.heads * 2 * half, "heads of even width");
        let shape_fits = self.cos.len() == len * half;
        assert!(shape_fits, "rotary tables for another shape");
        let sign = if inverse { -1.0 } else { 1.0 };
        qkv.par_chunks_mut(len * 3 * d).for_each(|sequence| {
            simd(
                #[inline(always)]
                || {
                    for (pos, row) in sequence.chunks_exact_mut(3 * d).enumerate() {
                        let cos = &self.cos[pos * half..][..half];
                        let sin = &self.sin[pos * half..][..half];
                        // Queries and keys: the first 2d columns, heads side by side.
                        for head in row[..2 * d].chunks_exact_mut(2 * half) {
                            rotate_head(head, cos, sin, sign);
                        }
                    }
                },
            )
        });
    }
}

/// Turns each pair `(head[i], head[i + half])` by the angle whose cosine and sine (times
/// `sign`) are `cos[i]` and `sin[i]`, as `Rope::apply` does.
#[inline(always)]
fn rotate_head(head: &mut [f32], cos: &[f32], sin: &[f32], sign: f32) {
    let (x1, x2) = head.split_at_mut(cos.len());
    for i in 0..cos.len() {
        let (a, b) = (x1[i], x2[i]);
        let (cos, sin) = (cos[i], sign * sin[i]);
        x1[i] = a * cos - b * sin;
        x2[i] = b * cos + a * sin;
    }
}
