//! Starting a run from trained weights: a whole checkpoint (`--init`, fine-tuning) or only its
//! Transformer core (`--core`), optionally frozen (`--freeze-core`), across modalities.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use aigc::train::{ImageRecipe, MultiRecipe, TextRecipe};
use common::{
    aigc, losses, small_corpus, tiny_text_model, write_tiny_audio_dataset, write_tiny_image_dataset,
};

/// The raw bytes of the tensors in a safetensors file whose names start with `prefix`.
fn tensors(path: &Path, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let header = header.as_object().unwrap();
    header
        .iter()
        .filter(|(name, _)| name.starts_with(prefix) && *name != "__metadata__")
        .map(|(name, info)| {
            let at = |i: usize| info["data_offsets"][i].as_u64().unwrap() as usize;
            (name.clone(), data[at(0)..at(1)].to_vec())
        })
        .collect()
}

/// The largest difference between two sets of f32 tensors with the same names.
fn max_abs_diff(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> f32 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let floats = |bytes: &[u8]| -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    a.iter()
        .flat_map(|(name, bytes)| {
            let (x, y) = (floats(bytes), floats(&b[name]));
            x.into_iter().zip(y).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

fn run_ok(args: &[&str]) {
    let o = aigc(args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn run_err(args: &[&str]) -> String {
    let o = aigc(args);
    assert!(!o.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn config_of(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// The path for adding a modality cheaply: an image adapter and decoder trained on top of a
/// core trained on text. The core's weights must come out bit-identical.
#[test]
fn an_image_model_trains_on_a_frozen_text_core() {
    let dir = tempfile::tempdir().unwrap();
    let image_core = ImageRecipe::tiny().model.core;
    let text_recipe = TextRecipe {
        train: aigc::train::TrainConfig {
            seq_len: image_core.max_seq_len,
            ..TextRecipe::tiny().train
        },
        core: image_core,
        ..TextRecipe::tiny()
    };
    let recipe = dir.path().join("text.json");
    std::fs::write(&recipe, serde_json::to_string(&text_recipe).unwrap()).unwrap();
    let corpus = small_corpus(dir.path(), 20_000);
    let text = dir.path().join("text");
    let (recipe, corpus, text_s) = (
        recipe.to_str().unwrap(),
        corpus.to_str().unwrap(),
        text.to_str().unwrap(),
    );
    run_ok(&[
        "pretrain", "text", "--config", recipe, "--data", corpus, "--out", text_s,
    ]);
    let data = dir.path().join("images");
    write_tiny_image_dataset(&data);
    let image = dir.path().join("image");
    let (data, image_s) = (data.to_str().unwrap(), image.to_str().unwrap());
    let image_args = [
        "pretrain", "image", "--preset", "tiny", "--data", data, "--out", image_s, "--core", text_s,
    ];
    run_ok(&[&image_args[..], &["--freeze-core", "--steps", "12"]].concat());

    let text_core = tensors(&text.join("model.safetensors"), "core.");
    assert!(text_core.len() > 5, "{:?}", text_core.keys());
    let changed = |dir: &Path| -> Vec<String> {
        let core = tensors(&dir.join("model.safetensors"), "core.");
        assert_eq!(core.len(), text_core.len());
        core.into_iter()
            .filter(|(name, bytes)| text_core[name] != *bytes)
            .map(|(name, _)| name)
            .collect()
    };
    assert_eq!(
        changed(&image),
        Vec::<String>::new(),
        "a frozen core changes no weight"
    );
    let image_losses = losses(&image);
    let (first, last) = (image_losses[0].1, image_losses.last().unwrap().1);
    assert!(
        last < first * 0.9,
        "the adapter and head learn: {first} -> {last}"
    );
    let train = &config_of(&image)["train"];
    assert_eq!(train["core_from"], text_s);
    assert_eq!(train["freeze_core"], true);

    // Without --freeze-core the core starts from the text core and then trains.
    let unfrozen = dir.path().join("unfrozen");
    let mut args = image_args.to_vec();
    args[7] = unfrozen.to_str().unwrap();
    run_ok(&args);
    assert_ne!(
        tensors(&unfrozen.join("model.safetensors"), "core."),
        text_core
    );

    // A core of another architecture is refused before training.
    let mismatch = dir.path().join("mismatch");
    args[7] = mismatch.to_str().unwrap();
    args[9] = "models/text-shakespeare";
    let err = run_err(&args);
    assert!(err.contains("differs from the new model's"), "{err}");
}

/// `--init` starts from the checkpoint's weights and tokenizer: with a learning rate too
/// small to move them, the fine-tuned weights are the original ones.
#[test]
fn fine_tuning_starts_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_text_model(dir.path());
    let recipe = TextRecipe {
        train: aigc::train::TrainConfig {
            lr: 1e-12,
            min_lr: 1e-12,
            steps: 2,
            ..TextRecipe::tiny().train
        },
        ..TextRecipe::tiny()
    };
    let recipe_path = dir.path().join("slow.json");
    std::fs::write(&recipe_path, serde_json::to_string(&recipe).unwrap()).unwrap();
    let corpus = dir.path().join("corpus.txt");
    let tuned = dir.path().join("tuned");
    let args = [
        "pretrain",
        "text",
        "--config",
        recipe_path.to_str().unwrap(),
        "--data",
        corpus.to_str().unwrap(),
        "--out",
        tuned.to_str().unwrap(),
        "--init",
        base.to_str().unwrap(),
    ];
    run_ok(&args);
    let before = common::logits_of(&base, &[1, 2, 3, 4]);
    let after = common::logits_of(&tuned, &[1, 2, 3, 4]);
    let diff = before
        .iter()
        .zip(&after)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-4, "logits moved by {diff}");
    let tokenizer = |d: &Path| std::fs::read(d.join("tokenizer.json")).unwrap();
    assert_eq!(tokenizer(&tuned), tokenizer(&base));
    assert_eq!(config_of(&tuned)["train"]["init"], base.to_str().unwrap());

    // An image checkpoint is no text model; --resume takes no starting point.
    let mut wrong = args.to_vec();
    let wrong_out = dir.path().join("wrong");
    wrong[7] = wrong_out.to_str().unwrap();
    wrong[9] = "models/image-mnist";
    let err = run_err(&wrong);
    assert!(err.contains("image"), "{err}");
    let resume = [
        "pretrain", "text", "--data", args[5], "--out", args[7], "--resume",
    ];
    let err = run_err(&[&resume[..], &["--init", args[9]]].concat());
    assert!(
        err.contains("--resume continues with the run's own settings"),
        "{err}"
    );
}

/// The same paths for a joint model: a modality added on the frozen core of a joint
/// checkpoint (`--core` + `--freeze-core`), and fine-tuning a joint checkpoint (`--init`).
#[test]
fn a_joint_model_adds_a_modality_on_a_frozen_core_and_fine_tunes() {
    let dir = tempfile::tempdir().unwrap();
    let (images, clips) = (dir.path().join("images"), dir.path().join("clips"));
    write_tiny_image_dataset(&images);
    write_tiny_audio_dataset(&clips);
    let image = format!("image={}", images.display());
    let audio = format!("audio={}", clips.display());
    let joint = |name: &str, args: &[&str]| {
        let out = dir.path().join(name);
        let base = ["pretrain", "multi", "--out", out.to_str().unwrap()];
        let o = aigc(&[&base[..], args].concat());
        (out, o)
    };
    let tiny = ["--preset", "tiny", "--steps", "4"];
    let (base, o) = joint("base", &[&tiny[..], &["--data", &image]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let base_s = base.to_str().unwrap();
    let base_core = tensors(&base.join("model.safetensors"), "core.");
    assert!(base_core.len() > 5, "{:?}", base_core.keys());

    let frozen = ["--data", &audio, "--core", base_s, "--freeze-core"];
    let (added, o) = joint("added", &[&tiny[..], &frozen[..]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let weights = added.join("model.safetensors");
    assert_eq!(
        tensors(&weights, "core."),
        base_core,
        "a frozen core changes no weight"
    );
    assert!(!tensors(&weights, "audio.").is_empty());
    assert_eq!(config_of(&added)["train"]["core_from"], base_s);

    // Fine-tuning with a learning rate too small to move the weights keeps them (every
    // tensor, adapters included), the checkpoint's tokenizer and sampling defaults, and
    // trains with the recipe's loss weights.
    let config = base.join("config.json");
    let mut json = config_of(&base);
    json["sampling"] = serde_json::json!({"image_guidance": 3.0});
    std::fs::write(&config, json.to_string()).unwrap();
    std::fs::remove_file(base.join("SHA256SUMS")).unwrap(); // the config was edited by hand
    let mut slow = MultiRecipe::tiny();
    (slow.train.lr, slow.train.min_lr, slow.train.steps) = (1e-12, 1e-12, 2);
    slow.model.loss_weights.image = 0.5;
    let recipe = dir.path().join("slow.json");
    std::fs::write(&recipe, serde_json::to_string(&slow).unwrap()).unwrap();
    let recipe = recipe.to_str().unwrap();
    let init = ["--config", recipe, "--init", base_s];
    let (tuned, o) = joint("tuned", &[&init[..], &["--data", &image]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let all = |d: &Path| tensors(&d.join("model.safetensors"), "");
    let diff = max_abs_diff(&all(&tuned), &all(&base));
    assert!(diff < 1e-6, "the weights moved by {diff}");
    let tokenizer = |d: &Path| std::fs::read(d.join("tokenizer.json")).unwrap();
    assert_eq!(tokenizer(&tuned), tokenizer(&base));
    let tuned_config = config_of(&tuned);
    assert_eq!(tuned_config["sampling"]["image_guidance"], 3.0);
    assert_eq!(tuned_config["model"]["loss_weights"]["image"], 0.5);

    // The checkpoint has no audio part to fine-tune.
    let (_, o) = joint("wrong", &[&init[..], &["--data", &audio]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no audio part"),
        "{err}"
    );

    // Nor room for captions longer than its prompts (here a class named in letters its
    // tokenizer knows): refused before training, not a panic mid-run.
    let long = "onetwoonetwoonetwoonetwo";
    std::fs::rename(images.join("2"), images.join(long)).unwrap();
    let (_, o) = joint("long", &[&init[..], &["--data", &image]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    let expected = format!("a caption of image class \"{long}\" is");
    assert!(!o.status.success() && err.contains(&expected), "{err}");

    // Nor text windows longer than its context.
    let mut wide = slow.clone();
    wide.train.seq_len = 10_000;
    let recipe = dir.path().join("wide.json");
    std::fs::write(&recipe, serde_json::to_string(&wide).unwrap()).unwrap();
    let corpus = small_corpus(dir.path(), 20_000);
    let text = format!("text={}", corpus.display());
    let wide_args = ["--config", recipe.to_str().unwrap(), "--init", base_s];
    let (_, o) = joint("wide", &[&wide_args[..], &["--data", &text]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("seq_len (10000) exceeds the model's max_seq_len"),
        "{err}"
    );
}
