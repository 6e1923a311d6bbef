//! Unit tests of the core on tiny configs.

use burn::prelude::*;
use burn::tensor::Distribution;

use super::attention::causal_mask;
use super::*;

fn device() -> Device {
    crate::default_device()
}

fn random_input(b: usize, t: usize, d: usize) -> Tensor<3> {
    Tensor::random([b, t, d], Distribution::Normal(0.0, 1.0), &device())
}

fn max_abs_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

fn configs() -> Vec<TransformerConfig> {
    let rope = TransformerConfig::tiny();
    let learned = TransformerConfig {
        positions: Positions::Learned,
        activation: Activation::Gelu,
        bias: true,
        ..TransformerConfig::tiny()
    };
    let plain = TransformerConfig {
        positions: Positions::Learned,
        ..TransformerConfig::tiny() // squared ReLU, no biases
    };
    vec![rope, learned, plain]
}

#[test]
fn forward_keeps_the_shape() {
    for config in configs() {
        let core = config.init(&device());
        let y = core.forward(random_input(2, 5, 32));
        assert_eq!(y.dims(), [2, 5, 32]);
    }
}

#[test]
fn outputs_do_not_depend_on_the_future() {
    for config in configs() {
        let core = config.init(&device());
        let x = random_input(1, 8, 32);
        let changed = Tensor::cat(vec![x.clone().narrow(1, 0, 5), random_input(1, 3, 32)], 1);
        let (a, b) = (core.forward(x), core.forward(changed));
        assert!(max_abs_diff(a.clone().narrow(1, 0, 5), b.clone().narrow(1, 0, 5)) < 1e-5);
        assert!(max_abs_diff(a.narrow(1, 5, 3), b.narrow(1, 5, 3)) > 1e-3);
    }
}

/// Padding after a sequence (any length, any magnitude) leaves the sequence's outputs alone.
#[test]
fn huge_padding_does_not_leak_into_earlier_positions() {
    for config in configs() {
        let core = config.init(&device());
        let x = random_input(2, 5, 32);
        let padded = Tensor::cat(vec![x.clone(), random_input(2, 6, 32) * 1000.0], 1);
        let (a, b) = (core.forward(x), core.forward(padded).narrow(1, 0, 5));
        let diff = max_abs_diff(a, b);
        assert!(diff < 1e-4, "{diff}");
    }
}

#[test]
fn cached_decoding_equals_the_full_forward() {
    for config in configs() {
        let core = config.init(&device());
        // Single positions decode in place (HostKv): one sequence on raw rows, a batch through
        // the attention layer (9 sequences: enough heads to attend in parallel); longer
        // chunks through cached tensors.
        for batch in [1, 2, 9] {
            let x = random_input(batch, 12, 32);
            let full = core.forward(x.clone());
            let mut cache = core.new_cache();
            // A 5-position prefill, single positions, a 3-position chunk, single positions.
            let mut parts = vec![core.forward_cached(x.clone().narrow(1, 0, 5), &mut cache)];
            for t in 5..7 {
                parts.push(core.forward_cached(x.clone().narrow(1, t, 1), &mut cache));
            }
            parts.push(core.forward_cached(x.clone().narrow(1, 7, 3), &mut cache));
            for t in 10..12 {
                parts.push(core.forward_cached(x.clone().narrow(1, t, 1), &mut cache));
            }
            assert_eq!(cache.len(), 12);
            let stepped = Tensor::cat(parts, 1);
            let diff = max_abs_diff(full.clone(), stepped);
            assert!(
                diff < 1e-4,
                "cache parity off by {diff} (batch {batch}, {config:?})"
            );
            // Every position on its own, from an empty cache.
            let mut cache = core.new_cache();
            let parts = (0..12)
                .map(|t| core.forward_cached(x.clone().narrow(1, t, 1), &mut cache))
                .collect();
            let diff = max_abs_diff(full, Tensor::cat(parts, 1));
            assert!(diff < 1e-4, "one at a time: off by {diff} (batch {batch})");
        }
    }
}

/// A core wide enough that decoding reads its larger matrices (q/k/v and the MLP's) from
/// output-major copies, in two threads, while the output projection stays on one.
#[test]
fn decoding_through_output_major_copies_equals_the_full_forward() {
    let config = TransformerConfig {
        d_model: 256,
        n_heads: 4,
        n_layers: 2,
        d_ff: 1024,
        positions: Positions::Learned,
        activation: Activation::Gelu,
        bias: true,
        ..TransformerConfig::tiny()
    };
    let core = config.init(&device());
    let x = random_input(1, 6, 256);
    let full = core.forward(x.clone());
    let mut cache = core.new_cache();
    let mut parts = vec![core.forward_cached(x.clone().narrow(1, 0, 2), &mut cache)];
    for t in 2..6 {
        parts.push(core.forward_cached(x.clone().narrow(1, t, 1), &mut cache));
    }
    let diff = max_abs_diff(full, Tensor::cat(parts, 1));
    assert!(diff < 1e-4, "decoding off by {diff}");
}

#[test]
fn training_and_inference_attention_agree() {
    let core = TransformerConfig::tiny().init(&device());
    let x = random_input(2, 9, 32);
    let fused = core.forward(x.clone());
    let ad = device().autodiff();
    let manual = core.clone().fork(&ad).forward(x.to_device(&ad)).valid();
    assert!(max_abs_diff(fused, manual.to_device(&device())) < 1e-4);
}

#[test]
fn causal_mask_hides_exactly_the_future() {
    let mask: Vec<bool> = causal_mask(2, 4, &device())
        .into_data()
        .try_into_vec()
        .unwrap();
    // Queries at absolute positions 2 and 3 over keys 0..4.
    assert_eq!(
        mask,
        vec![false, false, false, true, false, false, false, false]
    );
    let square: Vec<bool> = causal_mask(3, 3, &device())
        .into_data()
        .try_into_vec()
        .unwrap();
    assert_eq!(
        square,
        vec![false, true, true, false, false, true, false, false, false]
    );
}

/// A change that breaks a config, and a word the error must contain.
type BrokenConfig = (fn(&mut TransformerConfig), &'static str);

#[test]
fn invalid_configs_are_rejected_with_reasons() {
    let cases: Vec<BrokenConfig> = vec![
        (|c| c.n_heads = 5, "divisible"),
        (|c| c.d_model = 0, "positive"),
        (|c| c.max_seq_len = 1, "max_seq_len"),
        (|c| c.dropout = 1.0, "dropout"),
        (
            |c| {
                c.d_model = 36;
                c.n_heads = 4
            },
            "even head_dim",
        ),
    ];
    for (edit, needle) in cases {
        let mut c = TransformerConfig::tiny();
        edit(&mut c);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains(needle), "{err} should mention {needle}");
    }
    assert!(TransformerConfig::tiny().validate().is_ok());
}
