//! The key/value cache: run state for incremental decoding, kept apart from the weights.

use burn::prelude::*;

use super::matvec::row_times_matrix;

/// Keys and values of every layer for the positions decoded so far.
///
/// Each step appends the new positions' K/V (`Tensor::cat` on the time axis, or in place while
/// one sequence decodes one position at a time), so decoding never recomputes the prefix.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
}

/// One layer's cached keys and values: `[B, H, S, hd]` tensors, or, while a single sequence
/// is decoded one position at a time on the CPU, plain buffers ([`HostKv`]).
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    kv: Option<(Tensor<4>, Tensor<4>)>,
    host: Option<HostKv>,
}

/// One sequence's keys and values in plain memory, `[H, capacity, hd]` each, so a decoding
/// step writes one row in place and attends without copying the cache (appending to a tensor
/// copies all of it each step).
#[derive(Debug, Clone)]
struct HostKv {
    k: Vec<f32>,
    v: Vec<f32>,
    heads: usize,
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

    /// Forgets every cached position.
    pub fn clear(&mut self) {
        self.layers
            .iter_mut()
            .for_each(|l| *l = LayerCache::default());
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
    /// Appends `k`, `v` (`[B, H, T, hd]`) and returns everything cached (`[B, H, S + T, hd]`).
    pub(crate) fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let previous = match self.host.take() {
            Some(host) => Some(host.into_tensors(&k.device())),
            None => self.kv.take(),
        };
        let (k, v) = match previous {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.kv = Some((k.clone(), v.clone()));
        (k, v)
    }

    /// One decoding step of one sequence: appends the new position's `k` and `v` (`[H, hd]`
    /// row-major, as `q`) and returns softmax(q kᵀ / √hd) v over every cached position, `[H, hd]`.
    /// `capacity` is the most positions the cache will hold.
    pub(crate) fn attend_one(
        &mut self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        heads: usize,
        capacity: usize,
    ) -> Vec<f32> {
        let host = match self.host.take() {
            Some(host) => host,
            None => HostKv::from_tensors(self.kv.take(), heads, q.len() / heads, capacity),
        };
        let host = self.host.insert(host);
        host.push(k, v);
        host.attend(q)
    }
}

impl HostKv {
    fn from_tensors(
        kv: Option<(Tensor<4>, Tensor<4>)>,
        heads: usize,
        head_dim: usize,
        capacity: usize,
    ) -> Self {
        let mut host = Self {
            k: vec![0.0; heads * capacity * head_dim],
            v: vec![0.0; heads * capacity * head_dim],
            heads,
            head_dim,
            capacity,
            len: 0,
        };
        if let Some((k, v)) = kv {
            let len = k.dims()[2];
            let (k, v) = (values(k), values(v));
            for h in 0..heads {
                let (from, to) = (h * len * head_dim, h * capacity * head_dim);
                let n = len * head_dim;
                host.k[to..to + n].copy_from_slice(&k[from..from + n]);
                host.v[to..to + n].copy_from_slice(&v[from..from + n]);
            }
            host.len = len;
        }
        host
    }

    fn into_tensors(self, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let (h, len, hd) = (self.heads, self.len, self.head_dim);
        let used = |buffer: &[f32]| -> Vec<f32> {
            (0..h)
                .flat_map(|i| &buffer[i * self.capacity * hd..(i * self.capacity + len) * hd])
                .copied()
                .collect()
        };
        let tensor = |data| Tensor::from_data(TensorData::new(data, [1, h, len, hd]), device);
        (tensor(used(&self.k)), tensor(used(&self.v)))
    }

    fn push(&mut self, k: &[f32], v: &[f32]) {
        assert!(self.len < self.capacity, "KV cache is full");
        let hd = self.head_dim;
        for h in 0..self.heads {
            let at = (h * self.capacity + self.len) * hd;
            self.k[at..at + hd].copy_from_slice(&k[h * hd..(h + 1) * hd]);
            self.v[at..at + hd].copy_from_slice(&v[h * hd..(h + 1) * hd]);
        }
        self.len += 1;
    }

    fn attend(&self, q: &[f32]) -> Vec<f32> {
        let (hd, len) = (self.head_dim, self.len);
        let scale = 1.0 / (hd as f32).sqrt();
        let mut out = vec![0.0f32; self.heads * hd];
        let mut weights = vec![0.0f32; len];
        for (h, y) in out.chunks_exact_mut(hd).enumerate() {
            let keys = &self.k[h * self.capacity * hd..][..len * hd];
            let values = &self.v[h * self.capacity * hd..][..len * hd];
            // SAFETY: `keys` is `[len, hd]` row-major, read here as its `[hd, len]` transpose;
            // `values` is `[len, hd]` row-major.
            unsafe {
                row_times_matrix(
                    &q[h * hd..][..hd],
                    keys.as_ptr(),
                    1,
                    hd as isize,
                    &mut weights,
                    scale,
                );
            }
            let max = weights.iter().fold(f32::NEG_INFINITY, |m, &w| m.max(w));
            let mut total = 0.0;
            for w in weights.iter_mut() {
                *w = (*w - max).exp();
                total += *w;
            }
            weights.iter_mut().for_each(|w| *w /= total);
            unsafe { row_times_matrix(&weights, values.as_ptr(), hd as isize, 1, y, 1.0) };
        }
        out
    }
}

/// The elements of `t` in row-major order.
fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec::<f32>()
        .expect("cached keys and values are f32")
}
