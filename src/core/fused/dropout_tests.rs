//! The fused block with dropout: its gradients against finite differences of its own forward
//! pass with fixed masks, where the masks act, and how they are drawn.

use super::attention::Heads;
use super::block::{backward, forward, BlockShape, Dropout, Params};
use super::tests::{block, device, inputs};
use crate::core::Activation;

/// A block's parameters in their slots (`[d, d_ff] = [8, 16]`, with biases), and its shape:
/// 2 sequences of 5 positions, 2 heads.
fn slice_block() -> (Vec<Vec<f32>>, BlockShape) {
    let (d, d_ff) = (8, 16);
    let sizes = [
        d,
        d,
        d * 3 * d,
        3 * d,
        d * d,
        d,
        d,
        d,
        d * d_ff,
        d_ff,
        d_ff * d,
        d,
    ];
    let value = |i: usize, salt: usize| ((i * 7919 + salt * 104_729) % 1000) as f32 / 1000.0 - 0.5;
    let norm_scale = |slot: usize| if slot.is_multiple_of(6) { 1.0 } else { 0.0 }; // gammas near 1
    let tensors = sizes
        .iter()
        .enumerate()
        .map(|(slot, &n)| (0..n).map(|i| value(i, slot) + norm_scale(slot)).collect())
        .collect();
    let heads = Heads {
        batch: 2,
        len: 5,
        d,
        heads: 2,
    };
    (tensors, BlockShape { heads, d_ff })
}

fn slice_params(tensors: &[Vec<f32>]) -> Params<'_> {
    let mut slots = [None; 12];
    for (slot, t) in slots.iter_mut().zip(tensors) {
        *slot = Some(&t[..]);
    }
    Params {
        tensors: slots,
        activation: Activation::Gelu,
        rotary: None,
    }
}

/// Masks with about `keep` of their elements set, from a fixed pattern.
fn masks(s: BlockShape, keep: f32, pattern: impl Fn(usize) -> bool) -> Dropout {
    let Heads {
        batch,
        len,
        d,
        heads,
    } = s.heads;
    let mask = |n: usize, salt: usize| {
        (0..n)
            .map(|i| pattern(i * 31 + salt) as u8 as f32)
            .collect()
    };
    Dropout {
        keep,
        attn: mask(batch * heads * len * len, 1),
        proj: mask(batch * len * d, 2),
        mlp: mask(batch * len * d, 3),
    }
}

#[test]
fn dropout_gradients_match_finite_differences_of_the_forward_pass() {
    let (tensors, s) = slice_block();
    let rows = s.heads.batch * s.heads.len * s.heads.d;
    let x: Vec<f32> = (0..rows)
        .map(|i| ((i * 37) % 19) as f32 / 10.0 - 0.9)
        .collect();
    let weights: Vec<f32> = (0..rows)
        .map(|i| ((i * 53) % 23) as f32 / 11.0 - 1.0)
        .collect();
    let dropout = masks(s, 0.7, |i| i % 10 < 7);
    let loss = |tensors: &[Vec<f32>], x: &[f32]| -> f64 {
        let (out, _) = forward(&slice_params(tensors), s, x, Some(&dropout));
        out.iter().zip(&weights).map(|(o, w)| (o * w) as f64).sum()
    };
    let (_, saved) = forward(&slice_params(&tensors), s, &x, Some(&dropout));
    let grads = backward(
        &slice_params(&tensors),
        s,
        &saved,
        Some(&dropout),
        &weights,
        [true; 12],
    );
    let eps = 1e-2;
    let numeric = |nudge: &dyn Fn(f32) -> f64| (nudge(eps) - nudge(-eps)) / (2.0 * eps as f64);
    for i in (0..x.len()).step_by(7) {
        let want = numeric(&|e| {
            let mut x = x.clone();
            x[i] += e;
            loss(&tensors, &x)
        });
        let got = grads.x[i] as f64;
        assert!(
            (got - want).abs() < 2e-2 * want.abs().max(1.0),
            "dx[{i}]: {got} != {want}"
        );
    }
    for slot in 0..12 {
        let grad = grads.params[slot].as_ref().expect("every gradient wanted");
        for i in (0..tensors[slot].len()).step_by(11) {
            let want = numeric(&|e| {
                let mut t = tensors.clone();
                t[slot][i] += e;
                loss(&t, &x)
            });
            let got = grad[i] as f64;
            let close = (got - want).abs() < 2e-2 * want.abs().max(1.0);
            assert!(close, "slot {slot}[{i}]: {got} != {want}");
        }
    }
}

#[test]
fn a_block_whose_masks_drop_everything_passes_its_input_and_gradient_through() {
    let (tensors, s) = slice_block();
    let rows = s.heads.batch * s.heads.len * s.heads.d;
    let x: Vec<f32> = (0..rows).map(|i| i as f32 / rows as f32 - 0.5).collect();
    let dropout = masks(s, 0.5, |_| false);
    let (out, saved) = forward(&slice_params(&tensors), s, &x, Some(&dropout));
    assert_eq!(out, x, "both branches dropped");
    let dout: Vec<f32> = x.iter().map(|v| v * 3.0 + 1.0).collect();
    let grads = backward(
        &slice_params(&tensors),
        s,
        &saved,
        Some(&dropout),
        &dout,
        [true; 12],
    );
    assert_eq!(grads.x, dout, "the gradient goes round both branches");
    for (slot, g) in grads.params.iter().enumerate() {
        let g = g.as_ref().expect("wanted");
        assert!(
            g.iter().all(|&v| v == 0.0),
            "slot {slot} got a gradient through a dropped branch"
        );
    }
}

#[test]
fn fused_dropout_draws_its_masks_from_the_seeded_device() {
    let block = block(Activation::Gelu, true);
    let (x, _) = inputs();
    let run = |seed: u64| {
        let _rng = crate::rng::lock_device_rng();
        crate::rng::seed(&device(), seed);
        let y = block.fused_forward(&x, 0.3, None).expect("fused");
        y.into_data().try_into_vec::<f32>().unwrap()
    };
    let plain = block
        .fused_forward(&x, 0.0, None)
        .unwrap()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(run(7), run(7), "same seed, same masks");
    assert_ne!(run(7), run(8), "another seed, other masks");
    assert_ne!(run(7), plain, "dropout changed nothing");
}
