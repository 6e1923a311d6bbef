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
        condition_slots: 2,
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
            onset_prior: None,
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
    let labels = [2, 1, 0];
    let loss = model.image_loss(patches, &conditions, &labels).unwrap();
    assert!(loss.into_scalar::<f32>().is_finite());
    let units = Tensor::<3>::random([3, 5, 66], Distribution::Normal(0.0, 1.0), &device);
    let loss = model
        .audio_loss(units, &[5, 2, 1], &conditions, &labels)
        .unwrap();
    assert!(loss.into_scalar::<f32>().is_finite());
    for guidance in [1.0, 2.0] {
        let images = model
            .generate_images(&conditions, &options(guidance), &device)
            .unwrap();
        assert_eq!(images.dims(), [3, 4, 16]);
        let clips = model
            .generate_clips(&conditions, &[0.0; 3], &options(guidance), &device)
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
        model.image_loss(patches.clone(), &prompt, &[0]).unwrap()
    };
    // The reading's linear map and the flow head's output weights start at zero, so no
    // gradient reaches the prompt until a couple of steps have made them non-zero.
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
    let err_with = |c: Condition, labels: &[usize]| {
        let out = model.image_loss(patches.clone(), &[c], labels);
        out.err().unwrap().to_string()
    };
    let err = |c: Condition| err_with(c, &[0]);
    assert!(err(Condition::Label(3)).contains("outside the model's 3 image classes"));
    assert!(err(Condition::Prompt(vec![1; 7])).contains("at most 6"));
    assert!(err_with(Condition::Label(0), &[0, 1]).contains("got 1 conditions and 2 labels"));
    assert!(err_with(Condition::Prompt(vec![1]), &[3]).contains("label 3 is outside"));
    assert!(err(Condition::Prompt(vec![20])).contains("token 20 is outside"));
    let two_rows = Tensor::<3>::zeros([2, 4, 16], &device);
    let out = model.image_loss(two_rows, &[Condition::Label(0)], &[0]);
    assert!(out
        .err()
        .unwrap()
        .to_string()
        .contains("1 conditions for 2 rows"));
    let units = Tensor::<3>::zeros([1, 2, 66], &device);
    for lengths in [&[3][..], &[0], &[2, 2]] {
        let out = model.audio_loss(units.clone(), lengths, &[Condition::Label(0)], &[0]);
        let err = out.err().unwrap().to_string();
        assert!(err.contains("one clip length in 1..=2"), "{err}");
    }
    let no_audio = MultiModelConfig {
        audio: None,
        ..tiny()
    };
    let model = no_audio.init(&device).unwrap();
    let units = Tensor::<3>::zeros([1, 2, 66], &device);
    let out = model.audio_loss(units, &[2], &[Condition::Label(0)], &[0]);
    assert!(out.err().unwrap().to_string().contains("no audio part"));
    let long_prompts = MultiModelConfig {
        prompt_len: 32,
        ..tiny()
    };
    let err = long_prompts.validate().unwrap_err().to_string();
    assert!(err.contains("must hold 33 positions"), "{err}");
    let many_slots = MultiModelConfig {
        condition_slots: 30,
        ..tiny()
    };
    let err = many_slots.validate().unwrap_err().to_string();
    assert!(err.contains("33 positions: 30 condition slots"), "{err}");
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

/// Every condition slot holds the class's embedding, "no condition", or the core's reading
/// of the prompt, which depends on the prompt's tokens.
#[test]
fn the_condition_slot_holds_a_class_or_a_prompts_reading() {
    let device = crate::default_device();
    let mut model = tiny().init(&device).unwrap();
    let read_out = &mut model.image.as_mut().unwrap().read_out;
    let random = read_out
        .weight
        .val()
        .random_like(Distribution::Normal(0.0, 0.1));
    read_out.weight = burn::module::Param::from_tensor(random); // it starts at zero
    let conditions = [
        Condition::Label(1),
        Condition::Unconditional,
        Condition::Prompt(vec![7, 9]),
        Condition::Prompt(vec![7, 8]),
    ];
    let (prefix, reading) = model
        .condition_slots(Modality::Image, &conditions, &device)
        .unwrap();
    let d = prefix.dims()[2];
    assert_eq!(prefix.dims(), [4, 2, d]); // tiny() has 2 condition slots
    let reading = reading.unwrap();
    assert_eq!(reading.dims(), [2, d]);
    let class = model.image.as_ref().unwrap().class_embed.weight.val();
    let at = |row: usize, i: usize| prefix.clone().narrow(0, row, 1).narrow(1, i, 1);
    let slot = |row: usize| at(row, 0).reshape([1, d]);
    let same = |a: Tensor<2>, b: Tensor<2>| a.into_data().assert_eq(&b.into_data(), true);
    for row in 0..4 {
        same(at(row, 1).reshape([1, d]), slot(row));
    }
    same(slot(0), class.clone().narrow(0, 1, 1));
    same(slot(1), class.narrow(0, 3, 1)); // row n_classes: "no condition"
    same(slot(2), reading.clone().narrow(0, 0, 1));
    same(slot(3), reading.clone().narrow(0, 1, 1));
    let apart = (reading.clone().narrow(0, 0, 1) - reading.narrow(0, 1, 1))
        .abs()
        .sum();
    assert!(apart.into_scalar::<f32>() > 0.0);
}

/// Training pulls a caption's reading toward its class's embedding.
#[test]
fn training_aligns_a_prompts_reading_with_its_class() {
    use burn::optim::{AdamWConfig, GradientsParams};
    let device = crate::default_device().autodiff();
    let mut model = tiny().init(&device).unwrap();
    let conditions = [Condition::Prompt(vec![7, 9]), Condition::Prompt(vec![5])];
    let labels = [2, 0];
    let patches = Tensor::<3>::random([2, 4, 16], Distribution::Normal(0.0, 1.0), &device);
    let distance = |model: &MultiModel| {
        let (_, reading) = model
            .condition_slots(Modality::Image, &conditions, &device)
            .unwrap();
        let class = model.image.as_ref().unwrap().class_embed.weight.val();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 0], [2]), &device);
        let target = class.select(0, ids);
        let squared = (reading.unwrap() - target.clone()).powi_scalar(2).sum();
        (squared / target.powi_scalar(2).sum()).into_scalar::<f32>()
    };
    let before = distance(&model);
    // The class embeddings are the fixed target: with prompts alone they get no gradient.
    let loss = model.image_loss(patches.clone(), &conditions, &labels);
    let grads = loss.unwrap().backward();
    let class = &model.image.as_ref().unwrap().class_embed.weight;
    let moved = class
        .grad(&grads)
        .map_or(0.0, |g| g.abs().sum().into_scalar::<f32>());
    assert_eq!(moved, 0.0);
    let mut optim = AdamWConfig::new().init();
    for _ in 0..30 {
        let loss = model
            .image_loss(patches.clone(), &conditions, &labels)
            .unwrap();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
    }
    let after = distance(&model);
    assert!(after < 0.3 * before, "{before} -> {after}");
}

/// With an onset prior, a clip starts as the prior draws for its condition's class, and a
/// prompt counts as the class its reading is nearest to.
#[test]
fn clips_start_from_the_onset_prior_of_their_class_or_prompt() {
    use crate::modality::audio::{Onset, OnsetPriorConfig};
    let mut config = tiny();
    let audio = config.audio.as_mut().unwrap();
    let u = audio.format.unit_dim();
    // Class 0 starts quiet and lasts 2 units, class 1 loud and 6, class 2 in between, 4.
    let onsets: Vec<Onset> = (0..60)
        .map(|i| Onset {
            unit: vec![[-1.0, 1.0, 0.0][i % 3]; u],
            length: [2, 6, 4][i % 3],
        })
        .collect();
    let labels: Vec<usize> = (0..60).map(|i| i % 3).collect();
    let prior = OnsetPriorConfig {
        components: 1,
        dims: 2,
        fitted: None,
    };
    let fitted = prior.fit(&onsets, &labels, &[], 3, 1).unwrap();
    audio.onset_prior = Some(OnsetPriorConfig {
        fitted: Some(fitted),
        ..prior
    });
    let device = crate::default_device();
    let _rng = crate::rng::lock_device_rng();
    crate::rng::seed(&device, 5);
    let mut model = config.init(&device).unwrap();
    // A reading map that is not zero, then class embeddings placed around the prompt's
    // reading r: class 0 at -r, class 1 at r, class 2 at 3r (relative distances 4, 0, 4/9).
    let prompt = Condition::Prompt(vec![7, 9]);
    let adapter = model.audio.as_mut().unwrap();
    let random = adapter
        .read_out
        .weight
        .val()
        .random_like(Distribution::Normal(0.0, 0.1));
    adapter.read_out.weight = burn::module::Param::from_tensor(random);
    let (_, reading) = model
        .condition_slots(Modality::Audio, std::slice::from_ref(&prompt), &device)
        .unwrap();
    let r = reading.unwrap();
    let adapter = model.audio.as_mut().unwrap();
    let none = adapter.class_embed.weight.val().narrow(0, 3, 1);
    let rows = Tensor::cat(vec![r.clone().neg(), r.clone(), r * 3.0, none], 0);
    adapter.class_embed.weight = burn::module::Param::from_tensor(rows);
    let conditions = [
        Condition::Label(2),
        prompt.clone(),
        Condition::Unconditional,
    ];
    let classes = model
        .condition_classes(Modality::Audio, &conditions, None, &device)
        .unwrap();
    assert_eq!(classes, [2, 1, 3], "a label, the nearest class, none");

    let conditions: Vec<Condition> = (0..24)
        .map(|i| match i % 2 {
            0 => Condition::Label(0),
            _ => prompt.clone(),
        })
        .collect();
    for guidance in [1.0, 2.0] {
        let picks = model.onset_picks(&conditions, 3).unwrap();
        let clips = model
            .generate_clips(&conditions, &picks, &options(guidance), &device)
            .unwrap();
        for (i, clip) in clips.iter().enumerate() {
            let (n, first) = (clip.len() / u, clip[..u].iter().sum::<f32>() / u as f32);
            match i % 2 {
                0 => assert!(n <= 3 && first < -0.5, "label 0: {n} units, first {first}"),
                _ => assert!(n >= 5 && first > 0.5, "prompt: {n} units, first {first}"),
            }
        }
    }
}
