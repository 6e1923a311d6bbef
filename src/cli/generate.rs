//! `aigc generate <modality>`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

use aigc::modality::audio::{log_mel_picture, mel_shape, write_wav};
use aigc::modality::continuous::FlowGenerateOptions;
use aigc::modality::image::{grid, write_png};
use aigc::modality::multi::Condition;
use aigc::modality::text::GenerateOptions;
use aigc::sample::SamplingConfig;
use aigc::Pipeline;

#[derive(Subcommand, Debug)]
pub enum GenerateCommand {
    /// Continue a prompt; text goes to stdout, statistics to stderr.
    Text(TextArgs),
    /// Draw images of a class as PNG files `<label>_<index>.png`.
    Image(ImageArgs),
    /// Draw spoken clips of a class as WAV files `<label>_<index>.wav`.
    Audio(AudioArgs),
}

/// Sampling flags of the class-conditional generators, shared by `generate` and `eval`.
#[derive(Args, Debug)]
pub struct SamplingArgs {
    /// Classifier-free guidance scale (1: off; default: the checkpoint's own `sampling`, else
    /// 1.5 for images, 2 for audio).
    #[arg(long, allow_negative_numbers = true)]
    guidance: Option<f32>,
    /// Euler steps of the flow head per unit (16 by default).
    #[arg(long)]
    steps: Option<usize>,
    /// Scale of the flow head's starting noise (default 1 for images, 0.7 for audio; lower
    /// is cleaner).
    #[arg(long, allow_negative_numbers = true)]
    temperature: Option<f32>,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SamplingArgs {
    /// The sampling options: these flags over `defaults` (the checkpoint's own, see
    /// `Pipeline::image_options`).
    pub fn options(&self, defaults: FlowGenerateOptions) -> FlowGenerateOptions {
        FlowGenerateOptions {
            guidance: self.guidance.unwrap_or(defaults.guidance),
            steps: self.steps.unwrap_or(defaults.steps),
            temperature: self.temperature.unwrap_or(defaults.temperature),
            seed: self.seed,
            ..defaults
        }
    }
}

/// `count` labels cycling through every class: 0, 1, ..., n_classes - 1, 0, ...
pub fn every_class(count: usize, n_classes: usize) -> Vec<Option<usize>> {
    (0..count).map(|i| Some(i % n_classes)).collect()
}

/// Arguments shared by the class-conditional generators (image, audio).
#[derive(Args, Debug)]
pub struct FlowArgs {
    /// Checkpoint directory (default: the shipped model of the modality).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Class to draw (a number, or `none` for unconditional); default: every class in turn.
    #[arg(long, conflicts_with = "prompt")]
    label: Option<String>,
    /// A text prompt instead of a label ("a handwritten seven", "say four"); joint models
    /// only (`aigc pretrain multi`).
    #[arg(long)]
    prompt: Option<String>,
    /// Samples to draw.
    #[arg(long, default_value_t = 10)]
    count: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

impl FlowArgs {
    /// One label per sample to draw, checked against the request limit.
    fn labels(&self, n_classes: usize) -> anyhow::Result<Vec<Option<usize>>> {
        if self.count == 0 || self.count > MAX_SAMPLES {
            anyhow::bail!(
                "--count must be between 1 and {MAX_SAMPLES}, got {}",
                self.count
            );
        }
        Ok(match self.label.as_deref() {
            None => every_class(self.count, n_classes),
            Some("none") => vec![None; self.count],
            Some(l) => {
                let label: usize = l.parse().with_context(|| {
                    format!("--label must be a class number or `none`, got {l:?}")
                })?;
                vec![Some(label); self.count]
            }
        })
    }

    /// The conditions to draw (the prompt `--count` times, or the labels) and the samples'
    /// file names (`prompt_<index>`, or `<label>_<index>`).
    fn conditions(
        &self,
        n_classes: usize,
        pipeline: &Pipeline,
    ) -> anyhow::Result<(Vec<Condition>, Vec<String>)> {
        let labels = self.labels(n_classes)?;
        let Some(prompt) = &self.prompt else {
            let conditions = labels
                .iter()
                .map(|l| l.map_or(Condition::Unconditional, Condition::Label))
                .collect();
            return Ok((conditions, sample_names(&labels)));
        };
        let condition = pipeline.prompt(prompt)?;
        let names = (0..self.count).map(|i| format!("prompt_{i}")).collect();
        Ok((vec![condition; self.count], names))
    }

    /// The pipeline of `--model` (or the shipped model `shipped`).
    fn pipeline(&self, shipped: &str) -> anyhow::Result<Pipeline> {
        let dir = self
            .model
            .clone()
            .unwrap_or_else(|| super::shipped(shipped));
        Pipeline::load(&dir).with_context(|| format!("loading the model from {}", dir.display()))
    }

    /// The folder to write into, created if needed.
    fn out_dir(&self) -> anyhow::Result<&Path> {
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("creating {}", self.out.display()))?;
        Ok(&self.out)
    }
}

/// `<label>_<index>` for each sample.
fn sample_names(labels: &[Option<usize>]) -> Vec<String> {
    labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let name = label.map_or("none".to_string(), |l| l.to_string());
            format!("{name}_{i}")
        })
        .collect()
}

#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(flatten)]
    flow: FlowArgs,
    /// Also write all images as one grid, `grid.png`.
    #[arg(long)]
    grid: bool,
}

#[derive(Args, Debug)]
pub struct AudioArgs {
    #[command(flatten)]
    flow: FlowArgs,
    /// Also write each clip's log-mel spectrogram as `<label>_<index>.png`.
    #[arg(long)]
    spectrogram: bool,
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
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temperature: f32,
    /// Keep only the k most likely tokens (0: off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling mass (1: off).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    top_p: f32,
    /// Drop tokens below this fraction of the best one's probability (0: off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    min_p: f32,
    /// Penalty on already generated tokens (1: off).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
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
        GenerateCommand::Audio(args) => audio(args),
    }
}

fn text(args: TextArgs) -> anyhow::Result<()> {
    let dir = args
        .model
        .unwrap_or_else(|| super::shipped(super::SHIPPED_TEXT_MODEL));
    let started = Instant::now();
    let pipeline = Pipeline::load(&dir)
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
    let out = pipeline.generate_text(&args.prompt, &options, |piece| {
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
const MAX_SAMPLES: usize = 10_000;

fn image(args: ImageArgs) -> anyhow::Result<()> {
    let flow = &args.flow;
    let pipeline = flow.pipeline(super::SHIPPED_IMAGE_MODEL)?;
    let config = pipeline.image_config()?;
    let shape = config.image;
    let (conditions, names) = flow.conditions(config.n_classes, &pipeline)?;
    let options = flow.sampling.options(pipeline.image_options());
    let started = Instant::now();
    let images = pipeline.image_pixels(&conditions, &options)?;
    let secs = started.elapsed().as_secs_f64();
    let out = flow.out_dir()?;
    for (img, name) in images.iter().zip(&names) {
        write_png(&out.join(format!("{name}.png")), img, &shape)?;
    }
    if args.grid {
        let columns = (images.len() as f64).sqrt().ceil() as usize;
        let (pixels, shape) = grid(&images, &shape, columns);
        write_png(&out.join("grid.png"), &pixels, &shape)?;
    }
    eprintln!(
        "[{} images in {:.2} s: {:.1} images/s; written to {}]",
        images.len(),
        secs,
        images.len() as f64 / secs,
        out.display()
    );
    Ok(())
}

fn audio(args: AudioArgs) -> anyhow::Result<()> {
    let flow = &args.flow;
    let pipeline = flow.pipeline(super::SHIPPED_AUDIO_MODEL)?;
    let config = pipeline.audio_config()?;
    let format = config.format;
    let (conditions, names) = flow.conditions(config.n_classes, &pipeline)?;
    let options = flow.sampling.options(pipeline.audio_options());
    let started = Instant::now();
    let clips = pipeline.clip_samples(&conditions, &options)?;
    let secs = started.elapsed().as_secs_f64();
    let out = flow.out_dir()?;
    let format = &format;
    for (clip, name) in clips.iter().zip(&names) {
        write_wav(&out.join(format!("{name}.wav")), clip, format.sample_rate)?;
        if args.spectrogram {
            let picture = log_mel_picture(format, clip);
            // Low frequencies at the bottom, standardised values mapped to [-1, 1].
            let shape = mel_shape(format);
            let flipped: Vec<f32> = picture
                .chunks(shape.width)
                .rev()
                .flat_map(|row| row.iter().map(|v| (v / 3.0).clamp(-1.0, 1.0)))
                .collect();
            write_png(&out.join(format!("{name}.png")), &flipped, &shape)?;
        }
    }
    let seconds: f64 =
        clips.iter().map(|c| c.len() as f64).sum::<f64>() / format.sample_rate as f64;
    eprintln!(
        "[{} clips ({seconds:.1} s of audio) in {secs:.2} s: {:.1} clips/s; written to {}]",
        clips.len(),
        clips.len() as f64 / secs,
        out.display()
    );
    Ok(())
}
