//! `aigc eval` and `aigc info`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use aigc::checkpoint::{self, ModelConfig};
use std::ops::ControlFlow;

use aigc::modality::continuous::FlowGenerateOptions;
use aigc::modality::image::{
    generate_images, real_images_per_class, reference_features, score_images, ImageDataset,
};
use aigc::modality::text::read_text;
use aigc::modality::Split;
use aigc::train::evaluate_val_split;
use aigc::train::{classifier_recipe, pretrain_classifier, Start};
use burn::module::Module;

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Cross-entropy over the whole validation split; last line `nats_per_char=<x>`.
    Text(EvalTextArgs),
    /// Conditional accuracy and Fréchet distance of generated images, judged by a classifier
    /// trained on the real training split; last line `accuracy=<x> frechet=<y>`.
    Image(EvalImageArgs),
}

#[derive(Args, Debug)]
pub struct EvalImageArgs {
    /// Checkpoint directory (default: the shipped MNIST model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Labelled images: MNIST IDX files or class sub-folders (default: the shipped MNIST).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The judge; trained on --data's training split and saved here if missing.
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Images generated (and real images taken) per class.
    #[arg(long, default_value_t = 100)]
    per_class: usize,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 2.0)]
    guidance: f32,
    /// Euler steps per patch.
    #[arg(long, default_value_t = 16)]
    steps: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args, Debug)]
pub struct EvalTextArgs {
    /// Checkpoint directory (default: the shipped Shakespeare model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Corpus whose last 10% is scored (default: the shipped tiny-shakespeare).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Checkpoint directory (default: the shipped Shakespeare model).
    #[arg(long)]
    model: Option<PathBuf>,
}

pub fn eval(cmd: EvalCommand) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Text(args) => eval_text(args),
        EvalCommand::Image(args) => eval_image(args),
    }
}

fn eval_image(args: EvalImageArgs) -> anyhow::Result<()> {
    let dir = args
        .model
        .unwrap_or_else(|| super::shipped(super::SHIPPED_IMAGE_MODEL));
    let data = args
        .data
        .unwrap_or_else(|| super::shipped(super::SHIPPED_IMAGE_DATA));
    let judge_dir = args
        .classifier
        .unwrap_or_else(|| super::shipped(super::SHIPPED_IMAGE_JUDGE));
    let device = aigc::default_device();
    let (model, config) = checkpoint::load_image(&dir, &device)
        .with_context(|| format!("loading the model from {}", dir.display()))?;
    let ModelConfig::Image(image) = &config.model else {
        unreachable!("load_image returns image models")
    };
    if !judge_dir.join(checkpoint::CONFIG_FILE).exists() {
        eprintln!(
            "training the judge classifier on {} into {} (once)",
            data.display(),
            judge_dir.display()
        );
        let recipe = classifier_recipe(image.image, image.n_classes);
        pretrain_classifier(&data, &judge_dir, Start::Fresh(&recipe), |_| {
            ControlFlow::Continue(())
        })?;
    }
    let (judge, _) = checkpoint::load_classifier(&judge_dir, &device)?;
    let test = ImageDataset::load(&data, Split::Test, image.image)?;
    let reference = reference_features(&judge, &test)?;
    let (real, real_labels) = real_images_per_class(&test, args.per_class);
    let real_score = score_images(&judge, &real, &real_labels, &image.image, &reference)?;

    let labels: Vec<usize> = (0..image.n_classes)
        .flat_map(|c| std::iter::repeat_n(c, args.per_class))
        .collect();
    let options = FlowGenerateOptions {
        guidance: args.guidance,
        steps: args.steps,
        seed: args.seed,
        ..FlowGenerateOptions::image()
    };
    let started = std::time::Instant::now();
    let wanted: Vec<Option<usize>> = labels.iter().map(|&l| Some(l)).collect();
    let generated = generate_images(&model, &image.image, &wanted, &options)?;
    let images_per_s = generated.len() as f64 / started.elapsed().as_secs_f64();
    let gen_score = score_images(&judge, &generated, &labels, &image.image, &reference)?;

    println!("model: {}", dir.display());
    println!(
        "judge: {} (reference: all {} test images)",
        judge_dir.display(),
        test.len()
    );
    println!(
        "real test images:  count={} accuracy={:.4} frechet={:.3}",
        real_score.count, real_score.accuracy, real_score.frechet
    );
    println!(
        "generated images:  count={} accuracy={:.4} frechet={:.3}",
        gen_score.count, gen_score.accuracy, gen_score.frechet
    );
    println!(
        "guidance={} steps={} images_per_s={images_per_s:.1}",
        args.guidance, args.steps
    );
    println!(
        "accuracy={:.4} frechet={:.3}",
        gen_score.accuracy, gen_score.frechet
    );
    Ok(())
}

fn eval_text(args: EvalTextArgs) -> anyhow::Result<()> {
    let dir = args
        .model
        .unwrap_or_else(|| super::shipped(super::SHIPPED_TEXT_MODEL));
    let data = args
        .data
        .unwrap_or_else(|| super::shipped(super::SHIPPED_TEXT_DATA));
    let (model, tokenizer, _) = checkpoint::load_text(&dir, &aigc::default_device())
        .with_context(|| format!("loading the model from {}", dir.display()))?;
    let text = read_text(&data)?;
    let started = std::time::Instant::now();
    let result = evaluate_val_split(&model, &tokenizer, &text, args.batch_size.max(1))?;
    println!("model: {}", dir.display());
    println!(
        "data: {} (validation split: last 10% of the characters)",
        data.display()
    );
    println!(
        "tokens_scored={} chars_scored={}",
        result.score.targets, result.chars
    );
    println!("nats_per_token={:.4}", result.score.nats_per_token());
    println!("eval_seconds={:.1}", started.elapsed().as_secs_f64());
    println!("nats_per_char={:.4}", result.nats_per_char());
    Ok(())
}

pub fn info(args: InfoArgs) -> anyhow::Result<()> {
    let dir = args
        .model
        .unwrap_or_else(|| super::shipped(super::SHIPPED_TEXT_MODEL));
    let config = checkpoint::load_config(&dir)?;
    let device = aigc::default_device();
    let parameters = match &config.model {
        ModelConfig::Text(_) => checkpoint::load_text(&dir, &device)?.0.num_params(),
        ModelConfig::Image(_) => checkpoint::load_image(&dir, &device)?.0.num_params(),
        ModelConfig::Audio(_) => checkpoint::load_audio(&dir, &device)?.0.num_params(),
        ModelConfig::Classifier(_) => checkpoint::load_classifier(&dir, &device)?.0.num_params(),
    };
    println!("checkpoint: {}", dir.display());
    println!("modality: {}", config.model.modality());
    println!("format_version: {}", config.format_version);
    println!("parameters: {parameters}");
    println!("model: {}", serde_json::to_string(&config.model)?);
    if let Ok(state) = checkpoint::load_train_state(&dir) {
        println!(
            "trained: {} steps, {} units, {:.0} s; val loss {}",
            state.step,
            state.tokens_seen,
            state.train_seconds,
            state.val_loss.map_or("-".into(), |v| format!("{v:.4}"))
        );
    }
    Ok(())
}
