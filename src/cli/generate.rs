//! `aigc generate <modality>`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

use aigc::checkpoint;
use aigc::modality::continuous::FlowGenerateOptions;
use aigc::modality::image::{generate_images, grid, write_png};
use aigc::modality::text::{generate, GenerateOptions};
use aigc::sample::SamplingConfig;

#[derive(Subcommand, Debug)]
pub enum GenerateCommand {
    /// Continue a prompt; text goes to stdout, statistics to stderr.
    Text(TextArgs),
    /// Draw images of a class as PNG files `<label>_<index>.png`.
    Image(ImageArgs),
}

#[derive(Args, Debug)]
pub struct ImageArgs {
    /// Checkpoint directory (default: the shipped MNIST model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Class to draw (a number, or `none` for unconditional); default: every class in turn.
    #[arg(long)]
    label: Option<String>,
    /// Images to draw.
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// Classifier-free guidance scale (1: off).
    #[arg(long, default_value_t = 2.0)]
    guidance: f32,
    /// Euler steps of the flow head per patch.
    #[arg(long, default_value_t = 16)]
    steps: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Also write all images as one grid, `grid.png`.
    #[arg(long)]
    grid: bool,
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
        GenerateCommand::Image(args) => image(args),
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

/// Largest `--count` accepted in one call.
const MAX_IMAGES: usize = 10_000;

fn image(args: ImageArgs) -> anyhow::Result<()> {
    let dir = args
        .model
        .unwrap_or_else(|| super::shipped(super::SHIPPED_IMAGE_MODEL));
    let (model, config) = checkpoint::load_image(&dir, &aigc::default_device())
        .with_context(|| format!("loading the model from {}", dir.display()))?;
    let aigc::checkpoint::ModelConfig::Image(model_config) = &config.model else {
        unreachable!("load_image returns image models")
    };
    if args.count == 0 || args.count > MAX_IMAGES {
        anyhow::bail!(
            "--count must be between 1 and {MAX_IMAGES}, got {}",
            args.count
        );
    }
    let n_classes = model_config.n_classes;
    let labels: Vec<Option<usize>> = match args.label.as_deref() {
        None => (0..args.count).map(|i| Some(i % n_classes)).collect(),
        Some("none") => vec![None; args.count],
        Some(l) => {
            let label: usize = l
                .parse()
                .with_context(|| format!("--label must be a class number or `none`, got {l:?}"))?;
            vec![Some(label); args.count]
        }
    };
    let options = FlowGenerateOptions {
        guidance: args.guidance,
        steps: args.steps,
        seed: args.seed,
        ..FlowGenerateOptions::image()
    };
    let started = Instant::now();
    let images = generate_images(&model, &model_config.image, &labels, &options)?;
    let secs = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (i, (img, label)) in images.iter().zip(&labels).enumerate() {
        let name = label.map_or("none".to_string(), |l| l.to_string());
        write_png(
            &args.out.join(format!("{name}_{i}.png")),
            img,
            &model_config.image,
        )?;
    }
    if args.grid {
        let columns = (images.len() as f64).sqrt().ceil() as usize;
        let (pixels, shape) = grid(&images, &model_config.image, columns);
        write_png(&args.out.join("grid.png"), &pixels, &shape)?;
    }
    eprintln!(
        "[{} images in {:.2} s: {:.1} images/s; written to {}]",
        images.len(),
        secs,
        images.len() as f64 / secs,
        args.out.display()
    );
    Ok(())
}
