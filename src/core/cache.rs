//! The key/value cache: run state for incremental decoding, kept apart from the weights.

use burn::prelude::*;

/// Keys and values of every layer for the positions decoded so far.
///
/// Each step appends the new positions' K/V (`Tensor::cat` on the time axis), so decoding
/// never recomputes the prefix.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
}

/// One layer's cached keys and values, `[B, H, S, hd]` each.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    pub(crate) kv: Option<(Tensor<4>, Tensor<4>)>,
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
        self.layers.iter_mut().for_each(|l| l.kv = None);
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
        let (k, v) = match self.kv.take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.kv = Some((k.clone(), v.clone()));
        (k, v)
    }
}
