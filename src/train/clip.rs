//! Global-norm gradient clipping, as torch's `clip_grad_norm_`: all gradients are scaled by
//! one factor so their joint L2 norm is at most `max_norm`. (burn's built-in clipping works
//! per parameter tensor, which changes the update direction.)

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;

use super::shards::Scale;

/// Scales `grads` so their global L2 norm is at most `max_norm`; returns the norm before.
pub fn clip_global_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64) -> f32 {
    let mut squares = SquaredNorms {
        grads,
        parts: Vec::new(),
    };
    model.visit(&mut squares);
    if squares.parts.is_empty() {
        return 0.0;
    }
    let norm = Tensor::cat(squares.parts, 0)
        .sum()
        .into_scalar::<f32>()
        .sqrt();
    if max_norm > 0.0 && norm as f64 > max_norm {
        let factor = max_norm / (norm as f64 + 1e-6);
        model.visit(&mut Scale { grads, factor });
    }
    norm
}

struct SquaredNorms<'a> {
    grads: &'a GradientsParams,
    parts: Vec<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorms<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.parts.push(g.square().sum());
        }
    }
}
