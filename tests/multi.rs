//! The joint model end to end on tiny data: one core trained on text, images and audio
//! together; its checkpoint generates all three, by label and by text prompt.

mod common;

use aigc::modality::continuous::FlowGenerateOptions;
use aigc::modality::text::GenerateOptions;
use aigc::Pipeline;
use common::{aigc, losses, small_corpus, write_tiny_audio_dataset, write_tiny_image_dataset};

#[test]
fn one_core_trains_on_three_modalities_and_follows_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = small_corpus(dir.path(), 20_000);
    let images = dir.path().join("images");
    write_tiny_image_dataset(&images);
    let clips = dir.path().join("clips");
    write_tiny_audio_dataset(&clips);
    let out = dir.path().join("joint");
    let arg = |kind: &str, p: &std::path::Path| format!("{kind}={}", p.display());
    let (text, image, audio) = (
        arg("text", &corpus),
        arg("image", &images),
        arg("audio", &clips),
    );
    let o = aigc(&[
        "pretrain",
        "multi",
        "--preset",
        "tiny",
        "--data",
        &text,
        "--data",
        &image,
        "--data",
        &audio,
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "24",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(losses(&out).len(), 24);
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    for part in ["text", "image", "audio"] {
        let loss = last["val_parts"][part].as_f64();
        assert!(
            loss.is_some_and(f64::is_finite),
            "val_parts.{part} in {last}"
        );
    }

    let joint = Pipeline::load(&out).unwrap();
    let options = GenerateOptions {
        max_tokens: 10,
        ..GenerateOptions::default()
    };
    assert_eq!(
        joint
            .generate_text("ROMEO:", &options, |_| {})
            .unwrap()
            .generated_tokens,
        10
    );
    let flow = FlowGenerateOptions {
        steps: 2,
        ..FlowGenerateOptions::image()
    };
    let by_label = joint.generate_image(&[Some(1), None], &flow).unwrap();
    let by_prompt = joint
        .generate_image_from_prompts(&["a handwritten one", "an image of a two"], &flow)
        .unwrap();
    assert_eq!((by_label.len(), by_prompt.len()), (2, 2));
    assert_eq!(by_prompt[0].width(), 8);
    let spoken = joint
        .generate_audio_from_prompts(&["say zero"], &flow)
        .unwrap();
    assert!(!spoken[0].samples.is_empty());
    let err = joint
        .generate_image_from_prompts(&["say ☃"], &flow)
        .err()
        .unwrap();
    assert!(err.to_string().contains('☃'), "{err}");

    // the CLI: prompts name the files, labels as before; text from the joint model too
    let samples = dir.path().join("samples");
    let (model, samples_s) = (out.to_str().unwrap(), samples.to_str().unwrap());
    for (kind, prompt, file) in [
        ("image", "write the number two", "prompt_1.png"),
        ("audio", "pronounce one", "prompt_1.wav"),
    ] {
        let o = aigc(&[
            "generate", kind, "--model", model, "--prompt", prompt, "--count", "2", "--steps", "2",
            "--out", samples_s,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(samples.join(file).is_file(), "{file}");
    }
    let o = aigc(&["info", "--model", model]);
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(
        info.contains("modality: joint (text, image, audio)"),
        "{info}"
    );
    let o = aigc(&["generate", "text", "--model", model, "--max-tokens", "5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = aigc(&[
        "generate", "image", "--prompt", "a seven", "--out", samples_s,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("takes class labels, not prompts"), "{err}");

    // an onset prior fitted onto the joint model's audio part; clips by prompt start from it
    let with_prior = dir.path().join("with-prior");
    let with_prior_s = with_prior.to_str().unwrap();
    let o = aigc(&[
        "pretrain",
        "onset-prior",
        "--model",
        model,
        "--data",
        clips.to_str().unwrap(),
        "--out",
        with_prior_s,
        "--dims",
        "4",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config = aigc::checkpoint::load_config(&with_prior).unwrap();
    let aigc::checkpoint::ModelConfig::Multi(multi) = &config.model else {
        unreachable!("still a joint model")
    };
    let prior = multi.audio.as_ref().and_then(|a| a.onset_prior.as_ref());
    assert!(prior.is_some_and(|p| p.fitted.is_some()), "{prior:?}");
    let o = aigc(&[
        "generate",
        "audio",
        "--model",
        with_prior_s,
        "--prompt",
        "say two",
        "--count",
        "2",
        "--steps",
        "2",
        "--out",
        samples_s,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let no_weights = dir.path().join("no-weights");
    std::fs::create_dir(&no_weights).unwrap();
    std::fs::copy(out.join("config.json"), no_weights.join("config.json")).unwrap();
    let o = aigc(&[
        "pretrain",
        "onset-prior",
        "--model",
        no_weights.to_str().unwrap(),
        "--data",
        clips.to_str().unwrap(),
        "--out",
        dir.path().join("never").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("weights file not found"), "{err}");

    // eval: label-conditioned scores, then prompted ones (training and held-out phrasings)
    let judge = dir.path().join("judge");
    let o = aigc(&[
        "eval",
        "image",
        "--model",
        model,
        "--data",
        images.to_str().unwrap(),
        "--classifier",
        judge.to_str().unwrap(),
        "--per-class",
        "2",
        "--steps",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("images from held-out phrasings: count=6"),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("accuracy=") && last.contains(" prompt_accuracy="),
        "{last}"
    );

    // a single-modality model takes labels, not prompts
    let mnist = Pipeline::load(common::root().join("models/image-mnist")).unwrap();
    let err = mnist
        .generate_image_from_prompts(&["a seven"], &flow)
        .err()
        .unwrap();
    assert!(err.to_string().contains("not prompts"), "{err}");
}

#[test]
fn joint_data_arguments_are_checked() {
    let run = |data: &[&str]| {
        let mut args = vec!["pretrain", "multi", "--out", "/tmp/aigc-never-written"];
        for d in data {
            args.extend(["--data", d]);
        }
        let o = aigc(&args);
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(run(&["corpus.txt"]).contains("KIND=PATH"));
    assert!(run(&["video=x"]).contains("KIND is text, image or audio"));
    assert!(run(&["text=a", "text=b"]).contains("given twice"));
    let o = aigc(&[
        "pretrain", "text", "--data", "a", "--data", "b", "--out", "/tmp/x",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("give one --data path"));
}

#[test]
fn a_joint_run_keeps_only_the_parts_it_has_data_for() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    write_tiny_image_dataset(&images);
    let out = dir.path().join("joint");
    let image = format!("image={}", images.display());
    let o = aigc(&[
        "pretrain",
        "multi",
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--data",
        &image,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // the checkpoint loads (an untrained audio part without statistics once made it fail)
    let joint = Pipeline::load(&out).unwrap();
    let flow = FlowGenerateOptions {
        steps: 2,
        ..FlowGenerateOptions::image()
    };
    assert_eq!(joint.generate_image(&[Some(2)], &flow).unwrap().len(), 1);
    let err = joint.generate_audio(&[Some(0)], &flow).err().unwrap();
    assert!(err.to_string().contains("no audio part"), "{err}");

    // resuming with data for a part the model lacks is an error, not silently ignored
    let clips = dir.path().join("clips");
    write_tiny_audio_dataset(&clips);
    let audio = format!("audio={}", clips.display());
    let o = aigc(&[
        "pretrain",
        "multi",
        "--resume",
        "--out",
        out.to_str().unwrap(),
        "--data",
        &image,
        "--data",
        &audio,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no audio part"),
        "{err}"
    );
}

/// A modality's loss weight scales what training minimises for it: the first step's loss (same
/// seed, same batch) is exactly half with the image weight at 0.5.
#[test]
fn loss_weights_scale_each_modality_s_training_loss() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    write_tiny_image_dataset(&images);
    let image = format!("image={}", images.display());
    let first_loss = |weight: f64| {
        let mut recipe = aigc::train::MultiRecipe::tiny();
        recipe.model.loss_weights.image = weight;
        recipe.train.steps = 1;
        let config = dir.path().join(format!("recipe-{weight}.json"));
        std::fs::write(&config, serde_json::to_string(&recipe).unwrap()).unwrap();
        let out = dir.path().join(format!("run-{weight}"));
        let o = aigc(&[
            "pretrain",
            "multi",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--data",
            &image,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        losses(&out)[0].1
    };
    let (full, half) = (first_loss(1.0), first_loss(0.5));
    assert!(full > 0.0);
    assert!(
        (half - full / 2.0).abs() < 1e-6 * full,
        "{half} vs {full} / 2"
    );
}
