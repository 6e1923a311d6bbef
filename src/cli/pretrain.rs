//! `aigc pretrain <modality>`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;

use aigc::checkpoint::{read_json, TrainState};
use aigc::modality::audio::OnsetPriorConfig;
use aigc::train::{
    fit_onset_prior, pretrain_audio, pretrain_image, pretrain_multi, pretrain_text, AudioRecipe,
    ImageRecipe, MultiPaths, MultiRecipe, Progress, Recipe, Start, TextRecipe,
};

#[derive(Subcommand, Debug)]
pub enum PretrainCommand {
    /// Train a text model on a UTF-8 file or a folder of .txt files.
    Text {
        /// A built-in recipe.
        #[arg(long, value_enum, default_value_t = TextPreset::Shakespeare)]
        preset: TextPreset,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Train a class-conditional image model on MNIST IDX files or class sub-folders of images.
    Image {
        /// A built-in recipe.
        #[arg(long, value_enum, default_value_t = ImagePreset::Mnist)]
        preset: ImagePreset,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Train a class-conditional audio model on a folder of WAV files labelled by file name
    /// (`<label>_<anything>.wav`, as in FSDD) or by class sub-folder.
    Audio {
        /// A built-in recipe.
        #[arg(long, value_enum, default_value_t = AudioPreset::Fsdd)]
        preset: AudioPreset,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Train one joint model on several modalities:
    /// `--data text=PATH --data image=PATH --data audio=PATH` (any of them).
    Multi {
        /// A built-in recipe.
        #[arg(long, value_enum, default_value_t = MultiPreset::Tiny)]
        preset: MultiPreset,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Fit an onset prior to a trained audio model (or a joint model's audio part): a
    /// Gaussian mixture per class over each training clip's first unit and length, from which
    /// generation then starts its clips. Seconds; the weights do not change.
    OnsetPrior(OnsetPriorArgs),
}

/// Arguments of `aigc pretrain onset-prior`.
#[derive(Args, Debug)]
pub struct OnsetPriorArgs {
    /// The trained audio model, or joint model with an audio part.
    #[arg(long)]
    model: PathBuf,
    /// The clips it was trained on (their training split is fitted).
    #[arg(long)]
    data: PathBuf,
    /// Where to write the model with its prior (may be --model itself).
    #[arg(long)]
    out: PathBuf,
    /// Gaussian components per class.
    #[arg(long, default_value_t = 6)]
    components: usize,
    /// Principal components of the first unit the mixture models.
    #[arg(long, default_value_t = 32)]
    dims: usize,
    /// Seed of the mixture fit.
    #[arg(long, default_value_t = 1337)]
    seed: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MultiPreset {
    /// A few seconds on a toy model (for trying the pipeline).
    Tiny,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TextPreset {
    /// A few seconds on a toy model (for trying the pipeline).
    Tiny,
    /// The shipped char-level Shakespeare model.
    Shakespeare,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ImagePreset {
    /// A few seconds on 8x8 images (for trying the pipeline).
    Tiny,
    /// The shipped MNIST digit model.
    Mnist,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AudioPreset {
    /// A few seconds on a toy model (for trying the pipeline).
    Tiny,
    /// The shipped spoken-digit model.
    Fsdd,
}

/// Arguments every modality's pretraining shares.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Training data (text: a UTF-8 file or folder of .txt files; image: a folder of MNIST
    /// IDX files or of class sub-folders; audio: a folder of labelled WAV files). A joint run
    /// takes one `KIND=PATH` per modality.
    #[arg(long, required = true)]
    data: Vec<String>,
    /// Run directory: checkpoints, metrics.jsonl and the model card go here.
    #[arg(long)]
    out: PathBuf,
    /// A recipe JSON file; overrides --preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override the number of optimizer steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Override the seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Continue the run in --out from its last checkpoint, with its own settings.
    #[arg(long)]
    resume: bool,
    /// Fine-tune: start from this checkpoint's model (architecture, weights, tokenizer or
    /// codec statistics and onset prior) with the recipe's training settings (give it a lower
    /// `lr` with --config).
    #[arg(long, value_name = "CHECKPOINT", conflicts_with = "core")]
    init: Option<PathBuf>,
    /// Start the new model's Transformer core from this checkpoint's (any modality; the same
    /// core architecture).
    #[arg(long, value_name = "CHECKPOINT")]
    core: Option<PathBuf>,
    /// Train only the adapters and decoders; the core's weights never change.
    #[arg(long)]
    freeze_core: bool,
}

pub fn run(cmd: PretrainCommand) -> anyhow::Result<()> {
    match cmd {
        PretrainCommand::Text { preset, run } => {
            let preset = || match preset {
                TextPreset::Tiny => TextRecipe::tiny(),
                TextPreset::Shakespeare => TextRecipe::shakespeare(),
            };
            let data = single_path(&run)?;
            train(&run, preset, |o, s, p| pretrain_text(&data, o, s, p))
        }
        PretrainCommand::Image { preset, run } => {
            let preset = || match preset {
                ImagePreset::Tiny => ImageRecipe::tiny(),
                ImagePreset::Mnist => ImageRecipe::mnist(),
            };
            let data = single_path(&run)?;
            train(&run, preset, |o, s, p| pretrain_image(&data, o, s, p))
        }
        PretrainCommand::Audio { preset, run } => {
            let preset = || match preset {
                AudioPreset::Tiny => AudioRecipe::tiny(),
                AudioPreset::Fsdd => AudioRecipe::fsdd(),
            };
            let data = single_path(&run)?;
            train(&run, preset, |o, s, p| pretrain_audio(&data, o, s, p))
        }
        PretrainCommand::Multi { preset, run } => {
            let preset = || match preset {
                MultiPreset::Tiny => MultiRecipe::tiny(),
            };
            let paths = multi_paths(&run)?;
            train(&run, preset, |o, s, p| pretrain_multi(&paths, o, s, p))
        }
        PretrainCommand::OnsetPrior(args) => {
            let prior = OnsetPriorConfig {
                components: args.components,
                dims: args.dims,
                fitted: None,
            };
            fit_onset_prior(&args.model, &args.data, prior, args.seed, &args.out)?;
            println!("wrote {} with its onset prior", args.out.display());
            Ok(())
        }
    }
}

/// The one data path of a single-modality run.
fn single_path(args: &RunArgs) -> anyhow::Result<PathBuf> {
    match args.data.as_slice() {
        [one] => Ok(PathBuf::from(one)),
        _ => bail!("give one --data path (several are for `pretrain multi`)"),
    }
}

/// `KIND=PATH` data arguments of a joint run.
fn multi_paths(args: &RunArgs) -> anyhow::Result<MultiPaths> {
    let mut paths = MultiPaths::default();
    for arg in &args.data {
        let Some((kind, path)) = arg.split_once('=') else {
            bail!("--data {arg:?}: a joint run takes KIND=PATH, e.g. --data text=corpus.txt");
        };
        let slot = match kind {
            "text" => &mut paths.text,
            "image" => &mut paths.image,
            "audio" => &mut paths.audio,
            _ => bail!("--data {arg:?}: KIND is text, image or audio"),
        };
        if slot.replace(PathBuf::from(path)).is_some() {
            bail!("--data {kind}=... is given twice");
        }
    }
    Ok(paths)
}

type ProgressFn<'a> = &'a mut dyn FnMut(&Progress) -> ControlFlow<()>;

fn train<R: Recipe + DeserializeOwned>(
    args: &RunArgs,
    preset: impl FnOnce() -> R,
    pretrain: impl FnOnce(&Path, Start<'_, R>, ProgressFn<'_>) -> aigc::Result<TrainState>,
) -> anyhow::Result<()> {
    let recipe;
    let start = if args.resume {
        let starts = args.init.is_some() || args.core.is_some() || args.freeze_core;
        if args.config.is_some() || args.steps.is_some() || args.seed.is_some() || starts {
            bail!(
                "--resume continues with the run's own settings; drop --config, --steps, --seed, \
                 --init, --core and --freeze-core"
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
        recipe = resolve_recipe(args, preset)?;
        Start::Fresh(&recipe)
    };
    let bar = progress_bar();
    stop_on_signals();
    let mut on_progress = |p: &Progress| match INTERRUPTED.load(Ordering::SeqCst) {
        true => ControlFlow::Break(()), // the loop saves a checkpoint, then stops
        false => report(&bar, p),
    };
    let state = pretrain(&args.out, start, &mut on_progress)
        .with_context(|| format!("training on {}", args.data.join(", ")))?;
    bar.finish_and_clear();
    if INTERRUPTED.load(Ordering::SeqCst) {
        eprintln!(
            "interrupted: checkpoint of step {} saved in {}; continue with the same command and --resume",
            state.step,
            args.out.display()
        );
        std::process::exit(130);
    }
    eprintln!(
        "done: {} steps, {} units in {:.0} s; val loss {}; checkpoint in {}",
        state.step,
        state.tokens_seen,
        state.train_seconds,
        state.val_loss.map_or("-".into(), |v| format!("{v:.4}")),
        args.out.display()
    );
    Ok(())
}

/// Set by the first Ctrl-C (SIGINT) or SIGTERM: training finishes its step, saves a
/// checkpoint and exits with code 130.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // A second signal stops at once; checkpoints are written atomically, so the last
        // complete one stays intact.
        // SAFETY: `_exit` is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

fn stop_on_signals() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only swaps an atomic and may call the async-signal-safe `_exit`.
        unsafe { libc::signal(signal, handler) };
    }
}

fn resolve_recipe<R: Recipe + DeserializeOwned>(
    args: &RunArgs,
    preset: impl FnOnce() -> R,
) -> anyhow::Result<R> {
    let mut recipe = match &args.config {
        Some(path) => read_json(path)?,
        None => preset(),
    };
    if let Some(steps) = args.steps {
        recipe.train_mut().steps = steps;
    }
    if let Some(seed) = args.seed {
        recipe.train_mut().seed = seed;
    }
    let train = recipe.train_mut();
    train.init = args.init.clone().or(train.init.take());
    train.core_from = args.core.clone().or(train.core_from.take());
    train.freeze_core |= args.freeze_core;
    recipe.check()?;
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
        "loss {:.4} lr {:.2e} {:.0} units/s{val}",
        p.loss, p.lr, p.units_per_s
    );
    if bar.is_hidden() {
        if p.val_loss.is_some() || p.step.is_multiple_of(50) {
            eprintln!("step {}/{} {msg}", p.step, p.total_steps);
        }
    } else {
        bar.set_message(msg);
    }
    ControlFlow::Continue(())
}
