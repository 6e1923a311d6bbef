//! The fused block against burn's own ops: values, every gradient, and the kernels' accuracy.

use std::sync::Arc;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::Distribution;

use super::activation::erf;
use super::cross_entropy_sum;
use super::gemm::{product, Mat};
use super::kernels::{build, exp, max, sum};
use crate::core::block::Block;
use crate::core::rope::Rope;
use crate::core::{Activation, Positions, TransformerConfig};

pub(super) fn device() -> Device {
    crate::default_device().autodiff()
}

pub(super) fn block(activation: Activation, bias: bool) -> Block {
    let config = TransformerConfig {
        positions: Positions::Learned,
        activation,
        bias,
        ..TransformerConfig::tiny()
    };
    config.init_block(&device())
}

/// Every float parameter's gradient, in visiting order (`None` for one without).
struct ParamGrads<'a> {
    grads: &'a GradientsParams,
    found: Vec<Option<Vec<f32>>>,
}

impl ModuleVisitor for ParamGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let grad = self.grads.get::<D>(param.id);
        self.found
            .push(grad.map(|g| g.into_data().try_into_vec::<f32>().unwrap()));
    }
}

/// The block's output and the gradients of `Σ out · weights`: for `x`, then each parameter.
fn run(
    block: &Block,
    x: &Tensor<3>,
    weights: &Tensor<3>,
    fused: bool,
) -> (Vec<f32>, Vec<Option<Vec<f32>>>) {
    run_with(block, x, weights, fused, None, 0.0)
}

/// [`run`] with rotary positions and dropout, its masks drawn from a freshly seeded device.
fn run_with(
    block: &Block,
    x: &Tensor<3>,
    weights: &Tensor<3>,
    fused: bool,
    rope: Option<&Rope>,
    dropout: f64,
) -> (Vec<f32>, Vec<Option<Vec<f32>>>) {
    let _rng = crate::rng::lock_device_rng();
    crate::rng::seed(&device(), 42);
    let out = if fused {
        let rotary = rope.map(|r| Arc::new(r.fused_tables(x.dims()[1])));
        block
            .fused_forward(x, dropout, rotary.as_ref())
            .expect("the fused path runs under autodiff on the CPU")
    } else {
        block.forward(x.clone(), rope, None, 0, dropout)
    };
    let values = out.clone().into_data().try_into_vec::<f32>().unwrap();
    let grads = (out * weights.clone()).sum().backward();
    let x_grad = x
        .grad(&grads)
        .map(|g| g.into_data().try_into_vec::<f32>().unwrap());
    let grads = GradientsParams::from_grads(grads, block);
    let mut visitor = ParamGrads {
        grads: &grads,
        found: vec![x_grad],
    };
    block.visit(&mut visitor);
    (values, visitor.found)
}

/// Largest difference relative to the reference's largest magnitude.
fn relative_error(a: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(a.len(), reference.len());
    let scale = reference.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
        / scale
}

pub(super) fn inputs() -> (Tensor<3>, Tensor<3>) {
    let x = Tensor::random([2, 37, 32], Distribution::Normal(0.0, 1.0), &device()).require_grad();
    let weights = Tensor::random([2, 37, 32], Distribution::Normal(0.0, 1.0), &device());
    (x, weights)
}

#[test]
fn fused_block_matches_burn_ops_in_values_and_every_gradient() {
    for activation in [
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::SquaredRelu,
    ] {
        for bias in [false, true] {
            let block = block(activation, bias);
            let (x, weights) = inputs();
            let (fused, fused_grads) = run(&block, &x, &weights, true);
            let (plain, plain_grads) = run(&block, &x, &weights, false);
            let case = format!("{activation:?}, bias {bias}");
            assert!(relative_error(&fused, &plain) < 1e-5, "{case}: output");
            assert_eq!(fused_grads.len(), if bias { 13 } else { 7 }, "{case}");
            for (i, (f, p)) in fused_grads.iter().zip(&plain_grads).enumerate() {
                let (f, p) = (
                    f.as_ref().expect("fused grad"),
                    p.as_ref().expect("plain grad"),
                );
                let err = relative_error(f, p);
                assert!(err < 1e-4, "{case}: gradient {i} differs by {err}");
            }
        }
    }
}

#[test]
fn fused_block_with_rotary_positions_and_dropout_matches_burn_ops() {
    let (x, weights) = inputs();
    let [_, len, d] = x.dims();
    let heads = TransformerConfig::tiny().n_heads;
    let rope = Rope::new(d / heads, len + 3, 10_000.0, &device());
    for dropout in [0.0, 0.2] {
        let block = block(Activation::SquaredRelu, false);
        let (fused, fused_grads) = run_with(&block, &x, &weights, true, Some(&rope), dropout);
        let (plain, plain_grads) = run_with(&block, &x, &weights, false, Some(&rope), dropout);
        let (_, unrotated_grads) = run_with(&block, &x, &weights, true, None, dropout);
        assert!(
            relative_error(&fused, &plain) < 1e-5,
            "dropout {dropout}: output"
        );
        // At initialisation the scores are small, so the rotation shows most in the
        // gradients of the query and key weights (slot 2: after x and the first norm).
        let qkv_grad = |g: &[Option<Vec<f32>>]| g[2].clone().unwrap();
        let turned = relative_error(&qkv_grad(&unrotated_grads), &qkv_grad(&plain_grads));
        assert!(turned > 1e-3, "the rotation did nothing ({turned})");
        for (i, (f, p)) in fused_grads.iter().zip(&plain_grads).enumerate() {
            let err = relative_error(f.as_ref().unwrap(), p.as_ref().unwrap());
            assert!(
                err < 1e-4,
                "dropout {dropout}: gradient {i} differs by {err}"
            );
        }
    }
}

#[test]
fn frozen_parameters_get_no_gradient_and_the_input_gradient_still_matches() {
    let block = block(Activation::Gelu, true).no_grad();
    let (x, weights) = inputs();
    let (_, fused) = run(&block, &x, &weights, true);
    let (_, plain) = run(&block, &x, &weights, false);
    assert!(
        fused[1..].iter().all(Option::is_none),
        "a frozen parameter got a gradient"
    );
    let err = relative_error(fused[0].as_ref().unwrap(), plain[0].as_ref().unwrap());
    assert!(err < 1e-4, "input gradient differs by {err}");
}

#[test]
fn fused_block_is_deterministic() {
    let block = block(Activation::Gelu, true);
    let (x, weights) = inputs();
    assert_eq!(
        run(&block, &x, &weights, true),
        run(&block, &x, &weights, true)
    );
}

#[test]
fn exp_and_erf_are_accurate_over_their_range() {
    let mut worst_exp = 0.0f64;
    let mut worst_erf = 0.0f64;
    for i in -20_000..=20_000 {
        let x = i as f32 * 0.004; // -80..80 for exp
        let want = (x as f64).exp();
        worst_exp = worst_exp.max(((exp(x) as f64) - want).abs() / want);
        let x = i as f32 * 0.0002; // -4..4 for erf, where its series converges in f64
        worst_erf = worst_erf.max((erf(x) as f64 - erf_f64(x as f64)).abs());
    }
    assert!(worst_exp < 1e-6, "exp relative error {worst_exp}");
    assert!(worst_erf < 1e-6, "erf absolute error {worst_erf}");
    assert_eq!(exp(-200.0), exp(-87.0), "exp clamps instead of overflowing");
    for x in [4.0f32, 6.0, 10.0, 1e6] {
        assert!(
            (erf(x) - 1.0).abs() < 2e-7 && (erf(-x) + 1.0).abs() < 2e-7,
            "erf({x})"
        );
    }
}

/// `erf` in f64 from its Taylor series.
fn erf_f64(x: f64) -> f64 {
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn product_adds_bias_and_residual_to_the_rows_of_every_thread() {
    // 73 rows (a prime) split unevenly over the pool's threads, however many it has (one
    // thread runs them all); `b` is read through a transpose, as the backward pass reads the
    // weights.
    let (m, k, n) = (73, 64, 72);
    let value = |i: usize, salt: usize| ((i * 7919 + salt * 104_729) % 1000) as f32 / 500.0 - 1.0;
    let a: Vec<f32> = (0..m * k).map(|i| value(i, 1)).collect();
    let b_t: Vec<f32> = (0..n * k).map(|i| value(i, 2)).collect();
    let bias: Vec<f32> = (0..n).map(|i| value(i, 3)).collect();
    let residual: Vec<f32> = (0..m * n).map(|i| value(i, 4)).collect();
    let (a_mat, b_mat) = (Mat::new(&a, m, k), Mat::new(&b_t, n, k).t());
    let plain = product(a_mat, b_mat, None, None);
    let full = product(a_mat, b_mat, Some(&bias), Some(&residual));
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k)
                .map(|l| a[i * k + l] as f64 * b_t[j * k + l] as f64)
                .sum();
            let (got, got_full) = (plain[i * n + j] as f64, full[i * n + j] as f64);
            assert!((got - want).abs() < 1e-4, "({i}, {j}): {got} != {want}");
            let want_full = want + bias[j] as f64 + residual[i * n + j] as f64;
            assert!(
                (got_full - want_full).abs() < 1e-4,
                "({i}, {j}) with bias, residual"
            );
        }
    }
}

#[test]
fn build_hands_every_chunk_zeroed_to_its_own_index() {
    let built = build(1000, 64, |i, chunk| {
        assert!(chunk.iter().all(|&v| v == 0.0), "chunk {i} not zeroed");
        for (j, v) in chunk.iter_mut().enumerate() {
            *v = (i * 64 + j) as f32;
        }
    });
    assert_eq!(built, (0..1000).map(|i| i as f32).collect::<Vec<_>>());
    assert!(build(0, 64, |_, _| panic!("no chunk of nothing")).is_empty());
}

#[test]
fn lane_reductions_match_plain_ones_and_see_the_tail() {
    for len in [0, 1, 7, 8, 13, 64, 67] {
        let a: Vec<f32> = (0..len).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let mut with_tail_peak = a.clone();
        if let Some(last) = with_tail_peak.last_mut() {
            *last = 100.0;
        }
        assert_eq!(max(&a), a.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        assert_eq!(
            max(&with_tail_peak),
            if len == 0 { f32::NEG_INFINITY } else { 100.0 }
        );
        assert_eq!(sum(&a), a.iter().sum::<f32>(), "small integers sum exactly");
    }
}

/// The summed cross-entropy of `targets` under `h · wᵀ`, fused or by burn's ops; its value and
/// the gradients of `loss / 2` for `h` and `w` (`None` where frozen).
fn cross_entropy(
    h: &Tensor<2>,
    w: &Tensor<2>,
    targets: &Tensor<1, Int>,
    fused: bool,
) -> (f32, Option<Vec<f32>>, Option<Vec<f32>>) {
    let loss = match fused {
        true => cross_entropy_sum(h, w, targets).expect("the fused path runs under autodiff"),
        false => {
            let logits = h.clone().matmul(w.clone().transpose());
            let rows = targets.dims()[0];
            let picked = log_softmax(logits, 1).gather(1, targets.clone().reshape([rows, 1]));
            picked.sum().neg()
        }
    };
    let value = loss.clone().into_scalar::<f32>();
    let grads = (loss / 2.0).backward();
    let grad = |t: &Tensor<2>| {
        t.grad(&grads)
            .map(|g| g.into_data().try_into_vec::<f32>().unwrap())
    };
    (value, grad(h), grad(w))
}

#[test]
fn fused_cross_entropy_matches_burn_ops_in_value_and_both_gradients() {
    let (rows, d, classes) = (37, 16, 11);
    let normal = Distribution::Normal(0.0, 2.0);
    let h = Tensor::random([rows, d], normal, &device()).require_grad();
    let ids: Vec<i64> = (0..rows).map(|i| ((i * 7) % classes) as i64).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(ids, [rows]), &device());
    let w = Tensor::random([classes, d], normal, &device()).require_grad();
    // Both trained, then each frozen in turn.
    for (h, w) in [
        (&h, &w),
        (&h, &w.clone().detach()),
        (&h.clone().detach(), &w),
    ] {
        let (value, dh, dw) = cross_entropy(h, w, &targets, true);
        let (want, want_dh, want_dw) = cross_entropy(h, w, &targets, false);
        assert!(
            (value - want).abs() <= 1e-5 * want.abs(),
            "{value} != {want}"
        );
        for (name, got, want) in [("input", dh, want_dh), ("weight", dw, want_dw)] {
            match (got, want) {
                (Some(got), Some(want)) => {
                    let err = relative_error(&got, &want);
                    assert!(err < 1e-5, "{name} gradient differs by {err}");
                }
                (None, None) => {}
                (got, _) => panic!("{name} gradient {:?} where burn's is not", got.is_some()),
            }
        }
    }
    let plain = |t: &Tensor<2>| t.clone().inner();
    assert!(
        cross_entropy_sum(&plain(&h), &plain(&h), &targets.inner()).is_none(),
        "off autodiff the caller takes burn's ops"
    );
}

#[test]
fn fused_layer_norm_matches_burn_ops_in_values_and_every_gradient() {
    use burn::nn::LayerNormConfig;
    for bias in [true, false] {
        let mut norm = LayerNormConfig::new(32).with_bias(bias).init(&device());
        // Away from the initial ones and zeros, so that a mix-up would show.
        let random = |mean| {
            let t = Tensor::random([32], Distribution::Normal(mean, 0.5), &device());
            Param::from_tensor(t.require_grad())
        };
        norm.gamma = random(1.0);
        norm.beta = norm.beta.map(|_| random(0.3));
        let (x, weights) = inputs();
        let run = |fused: bool| {
            let y = match fused {
                true => {
                    let beta = norm.beta.as_ref().map(|b| b.val());
                    super::layer_norm(&x, &norm.gamma.val(), beta.as_ref()).expect("under autodiff")
                }
                false => norm.forward(x.clone()),
            };
            let values = y.clone().into_data().try_into_vec::<f32>().unwrap();
            let grads = (y * weights.clone()).sum().backward();
            let grad =
                |g: Option<Tensor<1>>| g.map(|g| g.into_data().try_into_vec::<f32>().unwrap());
            let dx = x
                .grad(&grads)
                .map(|g| g.into_data().try_into_vec::<f32>().unwrap());
            let dgamma = grad(norm.gamma.grad(&grads));
            let dbeta = grad(norm.beta.as_ref().and_then(|b| b.grad(&grads)));
            (values, [dx, dgamma, dbeta])
        };
        let ((fused, fused_grads), (plain, plain_grads)) = (run(true), run(false));
        assert!(relative_error(&fused, &plain) < 1e-5, "bias {bias}: output");
        for (i, (f, p)) in fused_grads.iter().zip(&plain_grads).enumerate() {
            match (f, p) {
                (Some(f), Some(p)) => {
                    let err = relative_error(f, p);
                    assert!(err < 1e-4, "bias {bias}: gradient {i} differs by {err}");
                }
                (None, None) => assert!(i == 2 && !bias, "gradient {i} missing"),
                _ => panic!("bias {bias}: gradient {i} present on one side only"),
            }
        }
    }
}

/// Linear layers on plain CPU tensors take the fused products (any rank, with or without a
/// bias) and give burn's values; autodiff tensors keep burn's own forward.
#[test]
fn plain_linear_layers_match_burns_forward() {
    let plain = crate::default_device();
    for bias in [true, false] {
        let layer = burn::nn::LinearConfig::new(24, 40)
            .with_bias(bias)
            .init(&plain);
        let x = Tensor::<3>::random([3, 70, 24], Distribution::Normal(0.0, 1.0), &plain);
        assert!(
            super::linear_rows(&layer, &x).is_some(),
            "the fused path runs"
        );
        let fused = super::forward_linear(&layer, x.clone());
        let want = layer.forward(x.clone());
        assert_eq!(fused.dims(), [3, 70, 40]);
        let diff = (fused - want).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "off by {diff} (bias {bias})");
        let flat = x.reshape([210, 24]);
        let diff = (super::forward_linear(&layer, flat.clone()) - layer.forward(flat))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff < 1e-5, "2-D: off by {diff}");
    }
    let layer = burn::nn::LinearConfig::new(24, 40).init(&device());
    let x = Tensor::<2>::random([5, 24], Distribution::Normal(0.0, 1.0), &device());
    assert!(
        super::linear_rows(&layer, &x).is_none(),
        "autodiff keeps burn's forward"
    );
}
