//! `aigc bench <train|generate>`: speed of the real training loop and of generation, on
//! presets that `benches/torch_twin.py` mirrors in PyTorch (see `benches/README.md`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use aigc::checkpoint;
use aigc::core::{Activation, Positions, TransformerConfig};
use aigc::modality::audio::generate_clips;
use aigc::modality::continuous::FlowGenerateOptions;
use aigc::modality::image::generate_images;
use aigc::modality::text::{generate, read_text, Corpus, GenerateOptions, TextModelConfig};
use aigc::modality::text::{TextTokenizer, TokenizerKind};
use aigc::sample::SamplingConfig;
use aigc::train::{
    bench_training, median, AudioData, AudioRecipe, ImageData, ImageRecipe, TextData, TextRecipe,
    TrainBench, TrainConfig,
};

use super::generate::every_class;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Time training steps (forward, backward, optimizer) on fresh weights.
    Train(BenchTrainArgs),
    /// Time generation: text tokens one at a time with the KV cache (batch 1), or images
    /// and clips at the shipped models' settings.
    Generate(BenchGenerateArgs),
}

/// Models to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// nanoGPT exactly (learned positions, LayerNorm with bias, exact GELU, fused qkv, tied
    /// head): 4 layers, 4 heads, d_model 128, context 64, batch 12, characters.
    NanogptSmall,
    /// nanoGPT exactly: 6 layers, 6 heads, d_model 384, context 256, batch 8, characters.
    NanogptBig,
    /// The shipped text model's recipe (`models/text-shakespeare`).
    Text,
    /// The shipped image model's recipe (`models/image-mnist`).
    Image,
    /// The shipped audio model's recipe (`models/audio-fsdd`).
    Audio,
}

#[derive(Args, Debug)]
pub struct BenchTrainArgs {
    /// What to train.
    #[arg(long, value_enum)]
    preset: Preset,
    /// Timed steps (after the warm-up).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Training data (default: the preset's shipped dataset).
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BenchGenerateArgs {
    /// What to generate with: text presets use fresh weights; `image` and `audio` use the
    /// shipped models.
    #[arg(long, value_enum)]
    preset: Preset,
    /// Tokens per text run (the window slides past the context), or images/clips per run.
    #[arg(long)]
    count: Option<usize>,
    /// Timed runs (after one untimed run).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Train(args) => bench_train(args),
        BenchCommand::Generate(args) => bench_generate(args),
    }
}

/// A nanoGPT model (Karpathy's `model.py` with `bias=True`, dropout 0) and its optimizer
/// settings (AdamW 1e-3, betas 0.9/0.99, weight decay 0.1, clipping 1.0).
fn nanogpt(preset: Preset) -> TextRecipe {
    let (d_model, n_layers, n_heads, context, batch) = match preset {
        Preset::NanogptSmall => (128, 4, 4, 64, 12),
        _ => (384, 6, 6, 256, 8),
    };
    let mut train = TextRecipe::shakespeare().train;
    train.batch_size = batch;
    train.seq_len = context;
    train.lr = 1e-3;
    train.weight_decay = 0.1;
    train.beta2 = 0.99;
    train.warmup_steps = 0;
    TextRecipe {
        tokenizer: TokenizerKind::Char,
        core: TransformerConfig {
            d_model,
            n_heads,
            n_layers,
            d_ff: 4 * d_model,
            max_seq_len: context,
            dropout: 0.0,
            positions: Positions::Learned,
            activation: Activation::Gelu,
            bias: true,
            rope_theta: 10_000.0,
        },
        train,
    }
}

fn text_recipe(preset: Preset) -> TextRecipe {
    match preset {
        Preset::Text => TextRecipe::shakespeare(),
        _ => nanogpt(preset),
    }
}

fn bench_train(args: BenchTrainArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.steps > 0, "--steps must be positive");
    let shipped = |path| args.data.clone().unwrap_or_else(|| super::shipped(path));
    let (bench, flops_per_unit) = match args.preset {
        Preset::Image => {
            let recipe = ImageRecipe::mnist();
            let path = shipped(super::SHIPPED_IMAGE_DATA);
            let data = ImageData::load_splits(&path, recipe.model.image, recipe.model.n_classes)?;
            let init = |d: &_| recipe.model.init(d);
            (time(&recipe.train, &data, init, &args)?, None)
        }
        Preset::Audio => {
            let recipe = AudioRecipe::fsdd();
            let mut model = recipe.model.clone();
            let path = shipped(super::SHIPPED_AUDIO_DATA);
            let data = AudioData::fit_splits(&path, &mut model, recipe.train.batch_size)?;
            let init = |d: &_| model.init(d);
            (time(&recipe.train, &data, init, &args)?, None)
        }
        text => {
            let recipe = text_recipe(text);
            let path = shipped(super::SHIPPED_TEXT_DATA);
            let corpus_text = read_text(&path)?;
            let tokenizer = TextTokenizer::build(recipe.tokenizer, &corpus_text)?;
            let corpus = Corpus::new(&corpus_text, &tokenizer, recipe.train.seq_len, &path)?;
            let model = TextModelConfig {
                vocab_size: tokenizer.vocab_size(),
                core: recipe.core.clone(),
            };
            let init = |d: &_| model.init(d);
            let bench = time(&recipe.train, &TextData::new(corpus), init, &args)?;
            let flops = training_flops_per_token(bench.params, &recipe.core);
            (bench, Some(flops))
        }
    };
    let (phases, total) = bench.median();
    let ms = |s: f64| s * 1e3;
    println!(
        "preset={:?} params={} units_per_step={} threads={}",
        args.preset,
        bench.params,
        bench.units_per_step,
        rayon::current_num_threads()
    );
    println!(
        "step ms (median of {}): total {:.1} = forward {:.1} + backward {:.1} + optimizer {:.1}",
        bench.steps.len(),
        ms(total),
        ms(phases.forward),
        ms(phases.backward),
        ms(phases.optimizer)
    );
    if let Some(flops) = flops_per_unit {
        let achieved = flops * bench.units_per_s() / 1e9;
        let share = match fma_peak_gflops() {
            Some(peak) => format!(
                "{:.0}% of this CPU's fp32 peak, {peak:.1} GFLOP/s (an FMA loop on every thread)",
                100.0 * achieved / peak
            ),
            None => "no peak measured (this CPU has neither AVX-512 nor AVX2 with FMA)".to_string(),
        };
        println!("achieved {achieved:.1} GFLOP/s ({flops:.0} training FLOPs per token) = {share}");
    }
    println!(
        "tokens_per_s={:.1} peak_rss_mb={:.0}",
        bench.units_per_s(),
        peak_rss_mb()
    );
    Ok(())
}

fn time<M: aigc::train::Trainable>(
    train: &TrainConfig,
    data: &M::Data,
    init: impl FnOnce(&burn::prelude::Device) -> aigc::Result<M>,
    args: &BenchTrainArgs,
) -> anyhow::Result<TrainBench> {
    bench_training(train, data, init, args.warmup, args.steps).context("training")
}

/// nanoGPT's estimate (`estimate_mfu`, after the PaLM paper): `6 N + 12 L d T` FLOPs per
/// token for forward and backward, with `N` the parameters less the position table.
fn training_flops_per_token(params: usize, core: &TransformerConfig) -> f64 {
    let positions = match core.positions {
        Positions::Learned => core.max_seq_len * core.d_model,
        Positions::Rope => 0,
    };
    let n = (params - positions) as f64;
    let attention = 12 * core.n_layers * core.d_model * core.max_seq_len;
    6.0 * n + attention as f64
}

fn bench_generate(args: BenchGenerateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.count != Some(0), "--count must be positive");
    anyhow::ensure!(args.runs > 0, "--runs must be positive");
    let device = aigc::default_device();
    let (what, per_run, seconds): (&str, usize, Vec<f64>) = match args.preset {
        Preset::Image => {
            let dir = super::shipped(super::SHIPPED_IMAGE_MODEL);
            let (model, config) = checkpoint::load_image(&dir, &device)?;
            let checkpoint::ModelConfig::Image(image) = &config.model else {
                unreachable!("load_image returns image models")
            };
            let count = args.count.unwrap_or(100);
            let labels = every_class(count, image.n_classes);
            let options = FlowGenerateOptions::image();
            let seconds = timed_runs(args.runs, || {
                generate_images(&model, &image.image, &labels, &options).map(drop)
            })?;
            ("images", count, seconds)
        }
        Preset::Audio => {
            let dir = super::shipped(super::SHIPPED_AUDIO_MODEL);
            let (model, config) = checkpoint::load_audio(&dir, &device)?;
            let checkpoint::ModelConfig::Audio(audio) = &config.model else {
                unreachable!("load_audio returns audio models")
            };
            let count = args.count.unwrap_or(50);
            let labels = every_class(count, audio.n_classes);
            let options = FlowGenerateOptions::audio();
            let seconds = timed_runs(args.runs, || {
                generate_clips(&model, audio, &labels, &options).map(drop)
            })?;
            ("clips", count, seconds)
        }
        text => {
            let recipe = text_recipe(text);
            let corpus = read_text(&super::shipped(super::SHIPPED_TEXT_DATA))?;
            let tokenizer = TextTokenizer::build(recipe.tokenizer, &corpus)?;
            aigc::rng::seed(&device, 1337);
            let model = TextModelConfig {
                vocab_size: tokenizer.vocab_size(),
                core: recipe.core.clone(),
            }
            .init(&device)?;
            let count = args.count.unwrap_or(256);
            let options = GenerateOptions {
                max_tokens: count,
                sampling: SamplingConfig {
                    temperature: 0.0,
                    ..SamplingConfig::default()
                },
                stop: vec![],
            };
            let seconds = timed_runs(args.runs, || {
                generate(&model, &tokenizer, "", &options, |_| {}).map(drop)
            })?;
            ("tokens", count, seconds)
        }
    };
    let per_s = per_run as f64 / median(seconds.clone());
    println!(
        "preset={:?} {what}_per_run={per_run} runs={} threads={}",
        args.preset,
        seconds.len(),
        rayon::current_num_threads()
    );
    println!(
        "run seconds: {}",
        seconds
            .iter()
            .map(|s| format!("{s:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("{what}_per_s={per_s:.1} peak_rss_mb={:.0}", peak_rss_mb());
    Ok(())
}

/// Wall-clock seconds of `runs` calls of `work`, after one untimed call.
fn timed_runs(runs: usize, mut work: impl FnMut() -> aigc::Result<()>) -> anyhow::Result<Vec<f64>> {
    work()?;
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            work()?;
            Ok(started.elapsed().as_secs_f64())
        })
        .collect()
}

/// The fp32 peak of this CPU over the thread pool, in GFLOP/s: every thread runs independent
/// fused multiply-adds, 16-wide with AVX-512 (what the matmul kernels use where the CPU has
/// it) or else 8-wide, in 12 chains (enough to cover the FMA latency) for a fixed count.
/// `None` where the CPU has neither AVX-512 nor AVX2 with FMA.
fn fma_peak_gflops() -> Option<f64> {
    const ROUNDS: usize = 20_000_000;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let (lanes, kernel): (usize, fn(usize) -> f32) =
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F (checked on this line).
                (16, |rounds| unsafe { chains_avx512(rounds) })
            } else if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA (checked on these lines).
                (8, |rounds| unsafe { chains_avx2(rounds) })
            } else {
                return None;
            };
        #[target_feature(enable = "avx512f")]
        fn chains_avx512(rounds: usize) -> f32 {
            let mut acc = [_mm512_set1_ps(0.0); 12];
            let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
            for _ in 0..rounds {
                for x in acc.iter_mut() {
                    *x = _mm512_fmadd_ps(*x, a, b);
                }
            }
            acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
        }
        #[target_feature(enable = "avx2,fma")]
        fn chains_avx2(rounds: usize) -> f32 {
            let mut acc = [_mm256_set1_ps(0.0); 12];
            let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
            for _ in 0..rounds {
                for x in acc.iter_mut() {
                    *x = _mm256_fmadd_ps(*x, a, b);
                }
            }
            let mut lanes = [0.0f32; 8];
            let sum = acc
                .iter()
                .fold(_mm256_set1_ps(0.0), |s, &x| _mm256_add_ps(s, x));
            // SAFETY: `lanes` holds the 8 floats the store writes.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
            lanes.iter().sum()
        }
        let started = Instant::now();
        let sums = rayon::broadcast(|_| kernel(ROUNDS));
        std::hint::black_box(sums);
        let flops = (rayon::current_num_threads() * ROUNDS * 12 * lanes * 2) as f64;
        Some(flops / started.elapsed().as_secs_f64() / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The process's peak resident memory so far, in MiB (Linux `ru_maxrss` is in KiB).
fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0;
    if ok {
        usage.ru_maxrss as f64 / 1024.0
    } else {
        f64::NAN
    }
}
