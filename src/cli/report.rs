//! `aigc eval` and `aigc info`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use aigc::checkpoint::{self, ModelConfig};
use aigc::modality::text::read_text;
use aigc::train::evaluate_val_split;
use burn::module::Module;

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Cross-entropy over the whole validation split; last line `nats_per_char=<x>`.
    Text(EvalTextArgs),
    /// Conditional accuracy and Fréchet distance of generated images, judged by a classifier
    /// trained on the real training split; last line `accuracy=<x> frechet=<y>`.
    Image(super::judge::EvalImageArgs),
    /// Conditional accuracy and Fréchet distance of generated clips (and of real test clips,
    /// before and after the codec's round trip), judged by a log-mel CNN trained on the real
    /// training split; last line `accuracy=<x> frechet=<y>`.
    Audio(super::judge::EvalAudioArgs),
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
        EvalCommand::Image(args) => super::judge::eval_image(args),
        EvalCommand::Audio(args) => super::judge::eval_audio(args),
    }
}

fn eval_text(args: EvalTextArgs) -> anyhow::Result<()> {
    let dir = args
        .model
        .unwrap_or_else(|| super::shipped(super::SHIPPED_TEXT_MODEL));
    let data = args
        .data
        .unwrap_or_else(|| super::shipped(super::SHIPPED_TEXT_DATA));
    let (model, tokenizer) = checkpoint::load_any_text(&dir, &aigc::default_device())
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
        ModelConfig::Multi(_) => checkpoint::load_multi(&dir, &device)?.0.num_params(),
    };
    println!("checkpoint: {}", dir.display());
    match &config.model {
        ModelConfig::Multi(m) => {
            let parts = [
                ("text", true),
                ("image", m.image.is_some()),
                ("audio", m.audio.is_some()),
            ];
            let names: Vec<&str> = parts.iter().filter(|p| p.1).map(|p| p.0).collect();
            println!("modality: joint ({})", names.join(", "));
        }
        other => println!("modality: {}", other.modality()),
    }
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
