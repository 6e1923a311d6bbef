//! `aigc import gpt2` and `aigc export`: weights to and from the Python ecosystem.

use std::path::PathBuf;

use anyhow::{bail, Context};
use burn::module::Module;
use clap::{Args, Subcommand, ValueEnum};

use aigc::checkpoint::{self, Checkpoint, ModelConfig, TrainState};

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// A GPT-2 checkpoint in Hugging Face's layout (config.json, model.safetensors,
    /// tokenizer.json), written as an aigc text checkpoint.
    Gpt2(ImportArgs),
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Folder with the Hugging Face files.
    #[arg(long)]
    from: PathBuf,
    /// The aigc checkpoint directory to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn import(cmd: ImportCommand) -> anyhow::Result<()> {
    let ImportCommand::Gpt2(args) = cmd;
    if args.out.join(checkpoint::CONFIG_FILE).exists() {
        bail!(
            "{} already holds a checkpoint; choose another --out",
            args.out.display()
        );
    }
    let (model, tokenizer, config) =
        checkpoint::import_gpt2(&args.from, &aigc::default_device())
            .with_context(|| format!("importing GPT-2 from {}", args.from.display()))?;
    let card = format!(
        "# Imported GPT-2\n\nConverted from the Hugging Face files in `{}` by `aigc import gpt2`; \
         the weights are unchanged (renamed only).\n",
        args.from.display()
    );
    Checkpoint {
        config: &config,
        model: &model,
        train_weights: None,
        tokenizer: Some(&tokenizer),
        state: &TrainState::default(),
        optimizer: None,
        card: &card,
    }
    .save(&args.out)?;
    eprintln!(
        "imported: {} parameters into {}",
        model.num_params(),
        args.out.display()
    );
    Ok(())
}

/// Arguments of `aigc export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The aigc checkpoint directory to export.
    #[arg(long)]
    model: PathBuf,
    /// Output: a `.safetensors` file (pytorch), or a folder (gpt2).
    #[arg(long)]
    out: PathBuf,
    /// Layout of the exported weights.
    #[arg(long, value_enum, default_value_t = ExportFormat::Pytorch)]
    format: ExportFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    /// Any model: module-path keys, `[out, in]` linear weights, norm `weight`/`bias`.
    Pytorch,
    /// GPT-2-shaped text models: Hugging Face's GPT-2 files.
    Gpt2,
}

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let device = aigc::default_device();
    let dir = &args.model;
    let config = checkpoint::load_config(dir)?;
    match (args.format, &config.model) {
        (ExportFormat::Gpt2, ModelConfig::Text(text)) => {
            let (model, tokenizer, _) = checkpoint::load_text(dir, &device)?;
            checkpoint::export_gpt2(&model, text, &tokenizer, &args.out)?;
        }
        (ExportFormat::Gpt2, other) => bail!(
            "{}: {} models cannot be written as GPT-2, only text models can (use --format pytorch)",
            dir.display(),
            other.kind()
        ),
        (ExportFormat::Pytorch, ModelConfig::Text(_)) => {
            checkpoint::export_pytorch(&checkpoint::load_text(dir, &device)?.0, &args.out)?
        }
        (ExportFormat::Pytorch, ModelConfig::Image(_)) => {
            checkpoint::export_pytorch(&checkpoint::load_image(dir, &device)?.0, &args.out)?
        }
        (ExportFormat::Pytorch, ModelConfig::Audio(_)) => {
            checkpoint::export_pytorch(&checkpoint::load_audio(dir, &device)?.0, &args.out)?
        }
        (ExportFormat::Pytorch, ModelConfig::Classifier(_)) => {
            checkpoint::export_pytorch(&checkpoint::load_classifier(dir, &device)?.0, &args.out)?
        }
        (ExportFormat::Pytorch, ModelConfig::Multi(_)) => {
            checkpoint::export_pytorch(&checkpoint::load_multi(dir, &device)?.0, &args.out)?
        }
    }
    eprintln!("exported {} to {}", dir.display(), args.out.display());
    Ok(())
}
