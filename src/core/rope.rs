//! Rotary position embeddings (RoFormer, Su et al. 2021) in the rotate-half layout used by
//! LLaMA and GPT-NeoX: dimension `i` pairs with `i + head_dim/2`.

use burn::prelude::*;

use super::fused::Rotary;

/// Precomputed cos/sin tables, `[max_seq_len, head_dim]`. Constants: never saved or trained.
#[derive(Module, Debug)]
pub struct Rope {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl Rope {
    /// Tables for `max_seq_len` positions of heads `head_dim` wide.
    pub fn new(head_dim: usize, max_seq_len: usize, theta: f32, device: &Device) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_seq_len * head_dim);
        let mut sin = Vec::with_capacity(max_seq_len * head_dim);
        for pos in 0..max_seq_len {
            for i in 0..head_dim {
                let freq = theta.powf(-((i % half) as f32) * 2.0 / head_dim as f32);
                let angle = pos as f32 * freq;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let shape = [max_seq_len, head_dim];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// Rotates `x` as if its positions were `start..start + T`.
    ///
    /// # Shapes
    /// - `x`: `[B, H, T, hd]`; returns the same shape.
    pub fn apply(&self, x: Tensor<4>, start: usize) -> Tensor<4> {
        let [_, _, t, head_dim] = x.dims();
        let half = head_dim / 2;
        let cos = self
            .cos
            .clone()
            .narrow(0, start, t)
            .reshape([1, 1, t, head_dim]);
        let sin = self
            .sin
            .clone()
            .narrow(0, start, t)
            .reshape([1, 1, t, head_dim]);
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3); // (-x2, x1)
        x * cos + rotated * sin
    }

    /// The tables of positions `0..len` for the fused block: `[len, head_dim/2]` each (the
    /// columns past `head_dim/2` repeat the first half).
    pub(crate) fn fused_tables(&self, len: usize) -> Rotary {
        let half = self.cos.dims()[1] / 2;
        let values = |table: &Tensor<2>| {
            let data = table
                .clone()
                .narrow(0, 0, len)
                .narrow(1, 0, half)
                .into_data();
            data.convert::<f32>()
                .try_into_vec()
                .expect("f32 after conversion")
        };
        Rotary::new(values(&self.cos), values(&self.sin))
    }

    /// [`Rope::apply`] for one position `pos` of raw rows `x` (any number of `hd`-wide heads,
    /// in place); `None` off the CPU backend.
    pub fn apply_row(&self, x: &mut [f32], head_dim: usize, pos: usize) -> Option<()> {
        let row = |table: &Tensor<2>| super::matvec::row_values(table.clone().narrow(0, pos, 1));
        let (cos, sin) = (row(&self.cos)?, row(&self.sin)?);
        let half = head_dim / 2;
        for head in x.chunks_exact_mut(head_dim) {
            let (x1, x2) = head.split_at_mut(half);
            for i in 0..half {
                let (a, b) = (x1[i], x2[i]);
                x1[i] = a * cos[i] + -b * sin[i];
                x2[i] = b * cos[half + i] + a * sin[half + i];
            }
        }
        Some(())
    }
}
