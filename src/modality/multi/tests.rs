use burn::prelude::*;
use burn::tensor::Distribution;

use super::*;
use crate::core::{Positions, TransformerConfig};
use crate::modality::audio::AudioModelConfig;
use crate::modality::continuous::FlowGenerateOptions;
use crate::modality::flow::FlowTime;
use crate::modality::image::ImageModelConfig;
use crate::modality::Modality;

pub(crate) fn tiny() -> MultiModelConfig {
    let audio = AudioModelConfig::tiny();
    MultiModelConfig {
        core: TransformerConfig {
            positions: Positions::Learned,
            max_seq_len: 32,
            ..TransformerConfig::tiny()
        },
        vocab_size: 20,
        prompt_len: 6,
        image: Some(ImagePartConfig {
            image: ImageModelConfig::tiny().image,
            n_classes: 3,
            head_width: 32,
            head_blocks: 2,
            noise_draws: 2,
        }),
        audio: Some(AudioPartConfig {
            format: audio.format,
            stats: None,
            n_classes: 3,
            head_width: 32,
            head_blocks: 2,
            noise_draws: 2,
            input_noise: 0.0,
            flow_time: FlowTime::LogitNormal,
        }),
        mix: Mix::even(),
        loss_weights: Mix::even(),
        prompt_fraction: 0.5,
    }
}

fn options(guidance: f32) -> FlowGenerateOptions {
    FlowGenerateOptions {
        guidance,
        steps: 2,
        ..FlowGenerateOptions::image()
    }
}

#[test]
fn every_modality_trains_and_generates_through_one_core() {
    let device = crate::default_device();
    let model = tiny().init(&device).unwrap();
    let conditions = [
        Condition::Label(2),
        Condition::Prompt(vec![3, 4, 5]),
        Condition::Unconditional,
    ];
    let patches = Tensor::<3>::random([3, 4, 16], Distribution::Normal(0.0, 1.0), &device);
    let loss = model.image_loss(patches, &conditions).unwrap();
    assert!(loss.into_scalar::<f32>().is_finite());
    let units = Tensor::<3>::random([3, 5, 66], Distribution::Normal(0.0, 1.0), &device);
    let loss = model.audio_loss(units, &[5, 2, 1], &conditions).unwrap();
    assert!(loss.into_scalar::<f32>().is_finite());
    for guidance in [1.0, 2.0] {
        let images = model
            .generate_images(&conditions, &options(guidance), &device)
            .unwrap();
        assert_eq!(images.dims(), [3, 4, 16]);
        let clips = model
            .generate_clips(&conditions, &options(guidance), &device)
            .unwrap();
        assert_eq!(clips.len(), 3);
        assert!(clips.iter().all(|c| !c.is_empty() && c.len() % 66 == 0));
    }
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 2, 3], [1, 3]), &device);
    assert_eq!(model.text().forward(tokens).dims(), [1, 3, 20]);
}

/// A prompt reaches the core through the text embedding: the image loss has a gradient
/// for the prompt's tokens and none for tokens it does not contain.
#[test]
fn prompts_go_through_the_text_adapter() {
    use burn::optim::{AdamWConfig, GradientsParams};
    let device = crate::default_device().autodiff();
    let mut model = tiny().init(&device).unwrap();
    let patches = Tensor::<3>::random([1, 4, 16], Distribution::Normal(0.0, 1.0), &device);
    let loss = |model: &MultiModel| {
        let prompt = [Condition::Prompt(vec![7, 9])];
        model.image_loss(patches.clone(), &prompt).unwrap()
    };
    // The flow head starts with zero output weights, so no gradient reaches its condition
    // until two steps have made its output and then its blocks' last layers non-zero.
    let mut optim = AdamWConfig::new().init();
    for _ in 0..2 {
        let grads = GradientsParams::from_grads(loss(&model).backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let grads = loss(&model).backward();
    let embed = model.tok_embed.weight.grad(&grads).unwrap(); // (V, D)
    let row_norm = |r: usize| {
        let g = embed.clone().narrow(0, r, 1).abs().sum();
        g.into_scalar::<f32>()
    };
    assert!(row_norm(7) > 0.0 && row_norm(9) > 0.0);
    assert_eq!(row_norm(8), 0.0);
}

#[test]
fn bad_conditions_and_configs_are_errors() {
    let device = crate::default_device();
    let model = tiny().init(&device).unwrap();
    let patches = Tensor::<3>::zeros([1, 4, 16], &device);
    let err = |c: Condition| {
        let out = model.image_loss(patches.clone(), &[c]);
        out.err().unwrap().to_string()
    };
    assert!(err(Condition::Label(3)).contains("outside the model's 3 image classes"));
    assert!(err(Condition::Prompt(vec![1; 7])).contains("at most 6"));
    let no_audio = MultiModelConfig {
        audio: None,
        ..tiny()
    };
    let model = no_audio.init(&device).unwrap();
    let units = Tensor::<3>::zeros([1, 2, 66], &device);
    let out = model.audio_loss(units, &[2], &[Condition::Label(0)]);
    assert!(out.err().unwrap().to_string().contains("no audio part"));
    let short = MultiModelConfig {
        core: TransformerConfig {
            max_seq_len: 12,
            ..tiny().core
        },
        ..tiny()
    };
    let err = short.validate().unwrap_err().to_string();
    assert!(err.contains("must hold 15 positions"), "{err}");
    let no_text_loss = MultiModelConfig {
        loss_weights: Mix {
            text: 0.0,
            ..Mix::even()
        },
        ..tiny()
    };
    let err = no_text_loss.validate().unwrap_err().to_string();
    assert!(err.contains("loss weights must be finite and > 0"), "{err}");
}

/// Recipes written before loss weights existed (the joint recipe without its `loss_weights`)
/// load with weight 1 everywhere.
#[test]
fn loss_weights_default_to_one() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/multi-joint.json");
    let recipe = std::fs::read_to_string(path);
    let mut recipe: serde_json::Value = serde_json::from_str(&recipe.unwrap()).unwrap();
    let model = recipe["model"].as_object_mut().unwrap();
    assert!(
        model.remove("loss_weights").is_some(),
        "the recipe sets its loss weights"
    );
    let config: MultiModelConfig = serde_json::from_value(recipe["model"].clone()).unwrap();
    assert_eq!(config.loss_weights, Mix::even());
}

/// A class fills every slot of the prefix (no padding to attend to); a prompt is left-padded
/// and ends with the modality's "prompt ends" token.
#[test]
fn a_class_fills_the_prefix_and_a_prompt_is_padded() {
    let device = crate::default_device();
    let model = tiny().init(&device).unwrap();
    let conditions = [
        Condition::Label(1),
        Condition::Unconditional,
        Condition::Prompt(vec![7, 9]),
    ];
    let prefix = model.prefix(Modality::Image, &conditions, &device).unwrap(); // (3, 7, D)
    let d = prefix.dims()[2];
    assert_eq!(prefix.dims(), [3, 7, d]);
    let image = model.image.as_ref().unwrap();
    let class = image.class_embed.weight.val();
    let slot = |row: usize, at: usize| {
        prefix
            .clone()
            .narrow(0, row, 1)
            .narrow(1, at, 1)
            .reshape([1, d])
    };
    let same = |a: Tensor<2>, b: Tensor<2>| a.into_data().assert_eq(&b.into_data(), true);
    for at in 0..7 {
        same(slot(0, at), class.clone().narrow(0, 1, 1));
        same(slot(1, at), class.clone().narrow(0, 3, 1)); // row n_classes: "no condition"
    }
    same(slot(2, 0), model.pad.weight.val());
    same(slot(2, 4), model.tok_embed.weight.val().narrow(0, 7, 1));
    same(slot(2, 5), model.tok_embed.weight.val().narrow(0, 9, 1));
    same(slot(2, 6), image.prompt_end.weight.val());
}
