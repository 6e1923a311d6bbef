//! `aigc pretrain <modality>`.

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use aigc::checkpoint::read_json;
use aigc::train::{pretrain_text, Progress, Start, TextRecipe};

#[derive(Subcommand, Debug)]
pub enum PretrainCommand {
    /// Train a text model on a UTF-8 file or a folder of .txt files.
    Text(TextArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Preset {
    /// A few seconds on a toy model (for trying the pipeline).
    Tiny,
    /// The shipped char-level Shakespeare model.
    Shakespeare,
}

#[derive(Args, Debug)]
pub struct TextArgs {
    /// Training text: a UTF-8 file or a folder of .txt files (first 90% train, last 10% val).
    #[arg(long)]
    data: PathBuf,
    /// Run directory: checkpoints, metrics.jsonl and the model card go here.
    #[arg(long)]
    out: PathBuf,
    /// A recipe JSON file (tokenizer, core, train); overrides --preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A built-in recipe.
    #[arg(long, value_enum, default_value_t = Preset::Shakespeare)]
    preset: Preset,
    /// Override the number of optimizer steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Override the seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Continue the run in --out from its last checkpoint, with its own settings.
    #[arg(long)]
    resume: bool,
}

pub fn run(cmd: PretrainCommand) -> anyhow::Result<()> {
    match cmd {
        PretrainCommand::Text(args) => text(args),
    }
}

fn text(args: TextArgs) -> anyhow::Result<()> {
    let recipe;
    let start = if args.resume {
        if args.config.is_some() || args.steps.is_some() || args.seed.is_some() {
            bail!(
                "--resume continues with the run's own settings; drop --config, --steps and --seed"
            );
        }
        Start::Resume
    } else {
        if args.out.join(aigc::checkpoint::CONFIG_FILE).exists() {
            bail!(
                "{} already holds a checkpoint; pass --resume to continue it or choose another --out",
                args.out.display()
            );
        }
        recipe = resolve_recipe(&args)?;
        Start::Fresh(&recipe)
    };
    let bar = progress_bar();
    let state = pretrain_text(&args.data, &args.out, start, |p| report(&bar, p))
        .with_context(|| format!("training on {}", args.data.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "done: {} steps, {} tokens in {:.0} s; val loss {}; checkpoint in {}",
        state.step,
        state.tokens_seen,
        state.train_seconds,
        state.val_loss.map_or("-".into(), |v| format!("{v:.4}")),
        args.out.display()
    );
    Ok(())
}

fn resolve_recipe(args: &TextArgs) -> anyhow::Result<TextRecipe> {
    let mut recipe = match &args.config {
        Some(path) => read_json(path)?,
        None => match args.preset {
            Preset::Tiny => TextRecipe::tiny(),
            Preset::Shakespeare => TextRecipe::shakespeare(),
        },
    };
    if let Some(steps) = args.steps {
        recipe.train.steps = steps;
    }
    if let Some(seed) = args.seed {
        recipe.train.seed = seed;
    }
    recipe.validate()?;
    Ok(recipe)
}

/// A progress bar on a terminal; hidden (and replaced by log lines) otherwise.
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    bar
}

fn report(bar: &ProgressBar, p: &Progress) -> ControlFlow<()> {
    bar.set_length(p.total_steps as u64);
    bar.set_position(p.step as u64);
    let val = p.val_loss.map_or(String::new(), |v| format!(" val {v:.4}"));
    let msg = format!(
        "loss {:.4} lr {:.2e} {:.0} tok/s{val}",
        p.loss, p.lr, p.units_per_s
    );
    if bar.is_hidden() {
        if p.val_loss.is_some() || p.step % 50 == 0 {
            eprintln!("step {}/{} {msg}", p.step, p.total_steps);
        }
    } else {
        bar.set_message(msg);
    }
    ControlFlow::Continue(())
}
