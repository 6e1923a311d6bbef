//! Argument parsing and dispatch for the `aigc` binary.

mod bench;
mod generate;
mod interop;
mod judge;
mod pretrain;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Where the shipped models live, relative to the repository root.
const SHIPPED_TEXT_MODEL: &str = "models/text-shakespeare";
/// The shipped image model.
const SHIPPED_IMAGE_MODEL: &str = "models/image-mnist";
/// The shipped image dataset.
const SHIPPED_IMAGE_DATA: &str = "datasets/mnist";
/// The judge of generated digits, trained once by `aigc eval image`.
const SHIPPED_IMAGE_JUDGE: &str = "models/mnist-classifier";
/// The shipped audio model.
const SHIPPED_AUDIO_MODEL: &str = "models/audio-fsdd";
/// The shipped audio dataset.
const SHIPPED_AUDIO_DATA: &str = "datasets/fsdd/recordings";
/// The judge of generated spoken digits, trained once by `aigc eval audio`.
const SHIPPED_AUDIO_JUDGE: &str = "models/fsdd-classifier";
/// The shipped text corpus.
const SHIPPED_TEXT_DATA: &str = "datasets/tinyshakespeare/input.txt";

/// aigc: pretrain and generate text, images and audio with one Transformer core.
#[derive(Parser, Debug)]
#[command(name = "aigc", version, about)]
pub struct Cli {
    /// Worker threads for tensor math (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Compute device: cpu, or with the matching Cargo feature wgpu[:N] / cuda[:N]. Training
    /// takes a comma-separated list (`cuda:0,cuda:1`) and splits each step's batch over them.
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate content with a trained model.
    #[command(subcommand)]
    Generate(generate::GenerateCommand),
    /// Train a model on your own data (or resume a run).
    #[command(subcommand)]
    Pretrain(pretrain::PretrainCommand),
    /// Score a model on the validation split of a corpus.
    #[command(subcommand)]
    Eval(report::EvalCommand),
    /// Describe a checkpoint: architecture, size, training progress.
    Info(report::InfoArgs),
    /// Measure training and generation speed (compare with `benches/torch_twin.py`).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Convert a checkpoint from another framework's files into an aigc checkpoint.
    #[command(subcommand)]
    Import(interop::ImportCommand),
    /// Write a checkpoint's weights for PyTorch or Hugging Face.
    Export(interop::ExportArgs),
}

/// Parses the command line, runs it, and turns errors into a message and exit code 1.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let threads = cli.threads.unwrap_or(0); // 0: one per core
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .stack_size(8 << 20) // the main thread's size: commands run on a worker (below)
        .build_global()
    {
        eprintln!("error: cannot start {threads} threads: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = aigc::parse_devices(&cli.device).and_then(aigc::set_devices) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    // The command runs on a worker of the thread pool, so parallel tensor code splits work
    // with the other workers instead of waking all of them while this thread waits.
    let result = rayon::scope(|_| match cli.command {
        Command::Generate(cmd) => generate::run(cmd),
        Command::Pretrain(cmd) => pretrain::run(cmd),
        Command::Eval(cmd) => report::eval(cmd),
        Command::Info(args) => report::info(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Import(cmd) => interop::import(cmd),
        Command::Export(args) => interop::export(args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// `e` and its causes, "context: error: cause", leaving out a cause that the message before
/// it already quotes (the library's I/O and JSON errors include their source).
fn describe(e: &anyhow::Error) -> String {
    let mut messages = e.chain().map(|cause| cause.to_string());
    let mut text = messages.next().unwrap_or_default();
    let mut parent = text.clone();
    for message in messages {
        if !parent.contains(&message) {
            text = format!("{text}: {message}");
        }
        parent = message;
    }
    text
}

/// Resolves a shipped artifact: relative to the working directory if it exists there,
/// otherwise relative to the source tree this binary was built from.
fn shipped(path: &str) -> PathBuf {
    let local = Path::new(path);
    if local.exists() {
        return local.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::other("disk full");
        let e = anyhow::Error::new(aigc::Error::io("writing", "w.bin", io)).context("saving");
        assert_eq!(super::describe(&e), "saving: writing w.bin: disk full");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::describe(&e), "outer: inner");
    }
}
