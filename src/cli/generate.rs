//! `aigc generate <modality>`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

use aigc::checkpoint;
use aigc::modality::text::{generate, GenerateOptions};
use aigc::sample::SamplingConfig;

#[derive(Subcommand, Debug)]
pub enum GenerateCommand {
    /// Continue a prompt; text goes to stdout, statistics to stderr.
    Text(TextArgs),
}

#[derive(Args, Debug)]
pub struct TextArgs {
    /// Checkpoint directory (default: the shipped Shakespeare model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Text to continue (default: start from a newline).
    #[arg(long, default_value = "")]
    prompt: String,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 500)]
    max_tokens: usize,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Keep only the k most likely tokens (0: off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling mass (1: off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Drop tokens below this fraction of the best one's probability (0: off).
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Penalty on already generated tokens (1: off).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop before this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
}

pub fn run(cmd: GenerateCommand) -> anyhow::Result<()> {
    match cmd {
        GenerateCommand::Text(args) => text(args),
    }
}

fn text(args: TextArgs) -> anyhow::Result<()> {
    let dir = args
        .model
        .unwrap_or_else(|| super::shipped(super::SHIPPED_TEXT_MODEL));
    let started = Instant::now();
    let (model, tokenizer, _) = checkpoint::load_text(&dir, &aigc::default_device())
        .with_context(|| format!("loading the model from {}", dir.display()))?;
    let load_s = started.elapsed().as_secs_f64();
    let options = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling: SamplingConfig {
            seed: args.seed,
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
            repetition_penalty: args.repetition_penalty,
        },
        stop: args.stop,
    };
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{}", args.prompt)?;
    let started = Instant::now();
    let out = generate(&model, &tokenizer, &args.prompt, &options, |piece| {
        let _ = write!(stdout, "{piece}");
        let _ = stdout.flush();
    })?;
    writeln!(stdout)?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "[{} prompt tokens, {} generated in {:.2} s: {:.0} tokens/s; model loaded in {:.2} s]",
        out.prompt_tokens,
        out.generated_tokens,
        secs,
        out.generated_tokens as f64 / secs,
        load_s
    );
    Ok(())
}
