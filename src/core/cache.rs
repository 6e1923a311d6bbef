//! The key/value cache: run state for incremental decoding, kept apart from the model.
//!
//! On the CPU it also holds the layout decoding reads the large weight matrices in: an
//! output-major copy of each, made on the first one-row step ([`LayerCache::output_major`])
//! and made again if the weight changes. The copies outlive [`KvCache::clear`], since a sliding
//! window re-prefills the same model.

use std::collections::HashMap;
use std::sync::Arc;

use burn::module::ParamId;
use burn::prelude::*;
use burn_flex::FlexTensor;

use rayon::prelude::*;

use super::fused::kernels::{dot, simd};

/// Rows (sequences × heads) from which a decoding step attends in parallel; fewer (one
/// sequence's heads, a small batch) stay on the calling thread.
const PARALLEL_ROWS: usize = 32;

/// Keys and values of every layer for the positions decoded so far.
///
/// Each step appends the new positions' K/V (`Tensor::cat` on the time axis, or in place while
/// the sequences decode one position at a time on the CPU), so decoding never recomputes the
/// prefix.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
}

/// One layer's cached keys and values: `[B, H, S, hd]` tensors, or, while the sequences are
/// decoded one position at a time on the CPU, plain buffers ([`HostKv`]); and the output-major
/// copies of the layer's large weight matrices.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    kv: Option<(Tensor<4>, Tensor<4>)>,
    host: Option<HostKv>,
    output_major: HashMap<ParamId, OutputMajor>,
}

/// A weight matrix `[d_in, d_out]` copied output-major (`[d_out, d_in]`; shared by clones of
/// the cache), with the tensor it was copied from. Holding that tensor keeps its buffer alive
/// and unchanged (the backend copies a shared buffer before writing to it), so a weight still
/// in the same buffer, of the same shape, still has the copied values.
#[derive(Clone)]
struct OutputMajor {
    /// Held, not read: it keeps the copied buffer from being reused or written.
    _source: FlexTensor,
    /// The source's first element's address, its length and `d_out`.
    from: (usize, usize, usize),
    copy: Arc<Vec<f32>>,
}

impl std::fmt::Debug for OutputMajor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (_, len, d_out) = self.from;
        write!(f, "OutputMajor([{d_out}, {}])", len / d_out.max(1))
    }
}

impl OutputMajor {
    /// The copy of `w` (`[d_in, d_out]` row-major, `source`'s values).
    fn of(source: &FlexTensor, w: &[f32], d_out: usize) -> Self {
        Self {
            _source: source.clone(),
            from: (w.as_ptr() as usize, w.len(), d_out),
            copy: Arc::new(super::matvec::output_major(w, w.len() / d_out, d_out)),
        }
    }
}

/// The sequences' keys and values in plain memory, `[B·H, capacity, hd]` each (a head of a
/// sequence is a "row"), so a decoding step writes one position in place and attends without
/// copying the cache (appending to a tensor copies all of it each step).
#[derive(Debug, Clone)]
struct HostKv {
    k: Vec<f32>,
    v: Vec<f32>,
    /// Sequences × heads.
    rows: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
}

impl KvCache {
    /// An empty cache for a core of `n_layers` blocks.
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![LayerCache::default(); n_layers],
            len: 0,
        }
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first forward pass.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every cached position. The weight copies stay: a cache serves one model.
    pub fn clear(&mut self) {
        for layer in &mut self.layers {
            (layer.kv, layer.host) = (None, None);
        }
        self.len = 0;
    }

    pub(crate) fn layer(&mut self, i: usize) -> &mut LayerCache {
        &mut self.layers[i]
    }

    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }
}

impl LayerCache {
    /// The output-major copy (`[d_out, d_in]`) of the weight matrix `id`, whose values `w`
    /// (`[d_in, d_out]` row-major) are `source`'s. Made on first use, and again when the
    /// weight has moved to another buffer or changed shape (a model updated in between, or
    /// another model whose parameters share the id).
    pub(crate) fn output_major(
        &mut self,
        id: ParamId,
        source: &FlexTensor,
        w: &[f32],
        d_out: usize,
    ) -> &[f32] {
        let from = (w.as_ptr() as usize, w.len(), d_out);
        let copy = self
            .output_major
            .entry(id)
            .or_insert_with(|| OutputMajor::of(source, w, d_out));
        if copy.from != from {
            *copy = OutputMajor::of(source, w, d_out);
        }
        &copy.copy
    }

    /// Appends `k`, `v` (`[B, H, T, hd]`) and returns everything cached (`[B, H, S + T, hd]`).
    pub(crate) fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let previous = match self.host.take() {
            Some(host) => Some(host.into_tensors(k.dims()[0], &k.device())),
            None => self.kv.take(),
        };
        let (k, v) = match previous {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.kv = Some((k.clone(), v.clone()));
        (k, v)
    }

    /// One decoding step of every sequence: appends the new position's `k` and `v` (`[B·H, hd]`
    /// row-major, as `q`: `rows` = B·H heads of `B` sequences) and returns
    /// softmax(q kᵀ / √hd) v over every cached position, `[B·H, hd]`. `capacity` is the most
    /// positions the cache will hold.
    pub(crate) fn attend_one(
        &mut self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        rows: usize,
        capacity: usize,
    ) -> Vec<f32> {
        let host = match self.host.take() {
            Some(host) => host,
            None => HostKv::from_tensors(self.kv.take(), rows, q.len() / rows, capacity),
        };
        assert_eq!(
            (host.rows, host.head_dim),
            (rows, q.len() / rows),
            "a decoding step must continue the cached sequences (rows, head width)"
        );
        let host = self.host.insert(host);
        host.push(k, v);
        host.attend(q)
    }
}

impl HostKv {
    /// The buffers, holding `kv` (`[B, H, S, hd]` with B·H = `rows`) if given.
    fn from_tensors(
        kv: Option<(Tensor<4>, Tensor<4>)>,
        rows: usize,
        head_dim: usize,
        capacity: usize,
    ) -> Self {
        let mut host = Self {
            k: vec![0.0; rows * capacity * head_dim],
            v: vec![0.0; rows * capacity * head_dim],
            rows,
            head_dim,
            capacity,
            len: 0,
        };
        if let Some((k, v)) = kv {
            let [b, h, len, _] = k.dims();
            assert_eq!(
                b * h,
                rows,
                "a decoding step must continue the cached sequences"
            );
            let (k, v) = (values(k), values(v));
            for h in 0..rows {
                let (from, to) = (h * len * head_dim, h * capacity * head_dim);
                let n = len * head_dim;
                host.k[to..to + n].copy_from_slice(&k[from..from + n]);
                host.v[to..to + n].copy_from_slice(&v[from..from + n]);
            }
            host.len = len;
        }
        host
    }

    /// The cached positions as `[batch, H, S, hd]` tensors.
    fn into_tensors(self, batch: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let (rows, len, hd) = (self.rows, self.len, self.head_dim);
        assert_eq!(rows % batch, 0, "the cache holds whole sequences");
        let used = |buffer: &[f32]| -> Vec<f32> {
            (0..rows)
                .flat_map(|i| &buffer[i * self.capacity * hd..(i * self.capacity + len) * hd])
                .copied()
                .collect()
        };
        let shape = [batch, rows / batch, len, hd];
        let tensor = |data| Tensor::from_data(TensorData::new(data, shape), device);
        (tensor(used(&self.k)), tensor(used(&self.v)))
    }

    fn push(&mut self, k: &[f32], v: &[f32]) {
        assert!(self.len < self.capacity, "KV cache is full");
        let hd = self.head_dim;
        for h in 0..self.rows {
            let at = (h * self.capacity + self.len) * hd;
            self.k[at..at + hd].copy_from_slice(&k[h * hd..(h + 1) * hd]);
            self.v[at..at + hd].copy_from_slice(&v[h * hd..(h + 1) * hd]);
        }
        self.len += 1;
    }

    /// Attention of `q` (`[rows, hd]`) over the cached positions, `[rows, hd]`: the rows in
    /// parallel when there are many (a batch of sequences), else on the calling thread.
    fn attend(&self, q: &[f32]) -> Vec<f32> {
        let hd = self.head_dim;
        let mut out = vec![0.0f32; self.rows * hd];
        let row = |(r, y): (usize, &mut [f32])| self.attend_row(r, &q[r * hd..][..hd], y);
        if self.rows >= PARALLEL_ROWS {
            out.par_chunks_mut(hd).enumerate().for_each(row);
        } else {
            out.chunks_mut(hd).enumerate().for_each(row);
        }
        out
    }

    /// `y = softmax(q kᵀ / √hd) v` for row `r` of the cache, vectorized by [`simd`].
    fn attend_row(&self, r: usize, q: &[f32], y: &mut [f32]) {
        let (hd, len) = (self.head_dim, self.len);
        let scale = 1.0 / (hd as f32).sqrt();
        let keys = &self.k[r * self.capacity * hd..][..len * hd];
        let values = &self.v[r * self.capacity * hd..][..len * hd];
        simd(
            #[inline(always)]
            || {
                let mut weights: Vec<f32> =
                    keys.chunks_exact(hd).map(|k| dot(q, k) * scale).collect();
                let max = weights.iter().fold(f32::NEG_INFINITY, |m, &w| m.max(w));
                weights.iter_mut().for_each(|w| *w = (*w - max).exp());
                let total: f32 = weights.iter().sum();
                y.fill(0.0);
                for (w, v) in weights.iter().zip(values.chunks_exact(hd)) {
                    let w = w / total;
                    for (y, v) in y.iter_mut().zip(v) {
                        *y += w * v;
                    }
                }
            },
        )
    }
}

/// The elements of `t` in row-major order.
fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec::<f32>()
        .expect("cached keys and values are f32")
}
