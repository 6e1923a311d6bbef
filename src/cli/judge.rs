//! `aigc eval image` and `aigc eval audio`: generated samples judged by a classifier trained
//! once on the real training split.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use aigc::checkpoint::{self, ModelConfig};
use aigc::modality::audio::{decode_all, encode, mel_shape, AudioDataset};
use aigc::modality::image::{ImageDataset, ImageShape};
use aigc::modality::judge::{
    reference_features, score, Classifier, JudgeData, JudgeScore, Pictures,
};
use aigc::modality::multi::prompts::prompts;
use aigc::modality::multi::Condition;
use aigc::modality::Modality;
use aigc::modality::Split;
use aigc::train::{classifier_recipe, pretrain_classifier, Start};
use aigc::Pipeline;

use super::generate::SamplingArgs;

#[derive(Args, Debug)]
pub struct EvalAudioArgs {
    /// Checkpoint directory (default: the shipped FSDD model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Labelled WAV files (default: the shipped FSDD recordings).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The judge; trained on --data's training split and saved here if missing.
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Clips generated per class.
    #[arg(long, default_value_t = 30)]
    per_class: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
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
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// The judge in `dir`, trained there first (once) on `data()` if missing, for `epochs`
/// passes over the training pictures.
fn load_or_train_judge(
    dir: &Path,
    shape: ImageShape,
    n_classes: usize,
    epochs: f64,
    data: impl FnOnce() -> aigc::Result<JudgeData>,
) -> anyhow::Result<Classifier> {
    let recipe = |n_train| classifier_recipe(shape, n_classes, epochs, n_train);
    if !dir.join(checkpoint::CONFIG_FILE).exists() {
        eprintln!(
            "training the judge classifier into {} (once)",
            dir.display()
        );
        let data = data()?;
        let recipe = recipe(data.train.values.len());
        pretrain_classifier(&data, dir, Start::Fresh(&recipe), |_| {
            ControlFlow::Continue(())
        })?;
    }
    let (judge, config) = checkpoint::load_classifier(dir, &aigc::default_device())?;
    if config.model != ModelConfig::Classifier(recipe(0).0) {
        anyhow::bail!(
            "the judge in {} was built for other pictures; delete it to retrain",
            dir.display()
        );
    }
    Ok(judge)
}

/// A joint model's samples for captions of each wanted label: `labels[i]`'s class name in
/// the training phrasings, or in the held-out ones, cycling through the phrasings.
fn prompt_conditions(
    pipeline: &Pipeline,
    modality: Modality,
    classes: &[String],
    labels: &[usize],
    held_out: bool,
) -> anyhow::Result<Vec<Condition>> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let texts = prompts(modality, &classes[l], held_out);
            Ok(pipeline.prompt(&texts[i % texts.len()])?)
        })
        .collect()
}

/// The last line, `accuracy=<x> frechet=<y>`, with a joint model's prompted scores after it
/// (`prompt_accuracy` is with held-out phrasings).
fn print_last_line(labelled: &JudgeScore, prompted: Option<&(JudgeScore, JudgeScore)>, what: &str) {
    let mut line = format!(
        "accuracy={:.4} frechet={:.3}",
        labelled.accuracy, labelled.frechet
    );
    if let Some((seen, held_out)) = prompted {
        print_score(&format!("{what} from training phrasings:"), seen);
        print_score(&format!("{what} from held-out phrasings:"), held_out);
        line += &format!(
            " prompt_accuracy={:.4} prompt_frechet={:.3} prompt_ratio={:.3}",
            held_out.accuracy,
            held_out.frechet,
            held_out.accuracy / labelled.accuracy.max(f64::MIN_POSITIVE)
        );
    }
    println!("{line}");
}

/// Each path given, or else the shipped one in its place.
fn or_shipped<const N: usize>(mut given: [Option<PathBuf>; N], shipped: [&str; N]) -> [PathBuf; N] {
    std::array::from_fn(|i| {
        given[i]
            .take()
            .unwrap_or_else(|| super::shipped(shipped[i]))
    })
}

fn load_pipeline(dir: &Path) -> anyhow::Result<Pipeline> {
    Pipeline::load(dir).with_context(|| format!("loading the model from {}", dir.display()))
}

fn print_score(what: &str, score: &JudgeScore) {
    println!(
        "{what} count={} accuracy={:.4} frechet={:.3} (means {:.1}, variance {:.1})",
        score.count, score.accuracy, score.frechet, score.frechet_means, score.variance
    );
}

pub fn eval_image(args: EvalImageArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.per_class > 0, "--per-class must be positive");
    let shipped = [
        super::SHIPPED_IMAGE_MODEL,
        super::SHIPPED_IMAGE_DATA,
        super::SHIPPED_IMAGE_JUDGE,
    ];
    let [dir, data, judge_dir] = or_shipped([args.model, args.data, args.classifier], shipped);
    let pipeline = load_pipeline(&dir)?;
    let image = &pipeline.image_config()?;
    let options = args.sampling.options(pipeline.image_options());
    options.validate()?; // before the judge is loaded or trained
    let shape = image.image;
    let test_set = ImageDataset::load(&data, Split::Test, shape)?;
    let test = test_set.pictures();
    let judge = load_or_train_judge(&judge_dir, shape, image.n_classes, 1.6, || {
        Ok(JudgeData {
            train: ImageDataset::load(&data, Split::Train, shape)?.pictures(),
            test: test.clone(),
        })
    })?;
    let reference = reference_features(&judge, &test)?;
    let real_score = score(
        &judge,
        &test.first_per_class(image.n_classes, args.per_class),
        &reference,
    )?;

    let labels: Vec<usize> = (0..image.n_classes)
        .flat_map(|c| std::iter::repeat_n(c, args.per_class))
        .collect();
    let started = std::time::Instant::now();
    let wanted: Vec<Condition> = labels.iter().map(|&l| Condition::Label(l)).collect();
    let generated = pipeline.image_pixels(&wanted, &options)?;
    let images_per_s = generated.len() as f64 / started.elapsed().as_secs_f64();
    let generated = Pictures {
        shape,
        values: generated,
        labels: labels.clone(),
    };
    let gen_score = score(&judge, &generated, &reference)?;
    let prompted = |held_out| -> anyhow::Result<JudgeScore> {
        let conditions = prompt_conditions(
            &pipeline,
            Modality::Image,
            &test_set.classes,
            &labels,
            held_out,
        )?;
        let values = pipeline.image_pixels(&conditions, &options)?;
        let labels = labels.clone();
        Ok(score(
            &judge,
            &Pictures {
                shape,
                values,
                labels,
            },
            &reference,
        )?)
    };
    let prompt_scores = match pipeline.reads_prompts() {
        true => Some((prompted(false)?, prompted(true)?)),
        false => None,
    };

    println!("model: {}", dir.display());
    println!(
        "judge: {} (reference: all {} test images)",
        judge_dir.display(),
        test.values.len()
    );
    print_score("real test images:", &real_score);
    print_score("generated images:", &gen_score);
    println!(
        "guidance={} steps={} temperature={} images_per_s={images_per_s:.1}",
        options.guidance, options.steps, options.temperature
    );
    print_last_line(&gen_score, prompt_scores.as_ref(), "images");
    Ok(())
}

pub fn eval_audio(args: EvalAudioArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.per_class > 0, "--per-class must be positive");
    let shipped = [
        super::SHIPPED_AUDIO_MODEL,
        super::SHIPPED_AUDIO_DATA,
        super::SHIPPED_AUDIO_JUDGE,
    ];
    let [dir, data, judge_dir] = or_shipped([args.model, args.data, args.classifier], shipped);
    let pipeline = load_pipeline(&dir)?;
    let audio = &pipeline.audio_config()?;
    let options = args.sampling.options(pipeline.audio_options());
    options.validate()?; // before the judge is loaded or trained
    let format = &audio.format;
    let train = AudioDataset::load(&data, Split::Train, format)?;
    let test = AudioDataset::load(&data, Split::Test, format)?;
    let train_pictures = train.pictures(format);
    let test_pictures = test.pictures(format);
    let judge = load_or_train_judge(&judge_dir, mel_shape(format), audio.n_classes, 24.0, || {
        Ok(JudgeData {
            train: train_pictures.clone(),
            test: test_pictures.clone(),
        })
    })?;
    // The judge's features of the training clips are the reference: the test split (300
    // clips) is what real clips are scored with.
    let reference = reference_features(&judge, &train_pictures)?;
    let real_score = score(&judge, &test_pictures, &reference)?;
    let stats = audio.stats()?;
    let units: Vec<Vec<f32>> = test
        .clips
        .iter()
        .map(|c| encode(format, stats, c))
        .collect();
    let round_trip = AudioDataset {
        clips: decode_all(format, stats, &units),
        ..test.clone()
    };
    let codec_score = score(&judge, &round_trip.pictures(format), &reference)?;

    let labels: Vec<usize> = (0..audio.n_classes)
        .flat_map(|c| std::iter::repeat_n(c, args.per_class))
        .collect();
    let started = std::time::Instant::now();
    let wanted: Vec<Condition> = labels.iter().map(|&l| Condition::Label(l)).collect();
    let clips = pipeline.clip_samples(&wanted, &options)?;
    let clips_per_s = clips.len() as f64 / started.elapsed().as_secs_f64();
    let generated = AudioDataset {
        voices: Vec::new(),
        classes: test.classes.clone(),
        clips,
        labels: labels.clone(),
    };
    let gen_score = score(&judge, &generated.pictures(format), &reference)?;
    let prompted = |held_out| -> anyhow::Result<JudgeScore> {
        let conditions =
            prompt_conditions(&pipeline, Modality::Audio, &test.classes, &labels, held_out)?;
        let clips = AudioDataset {
            clips: pipeline.clip_samples(&conditions, &options)?,
            ..generated.clone()
        };
        Ok(score(&judge, &clips.pictures(format), &reference)?)
    };
    let prompt_scores = match pipeline.reads_prompts() {
        true => Some((prompted(false)?, prompted(true)?)),
        false => None,
    };

    println!("model: {}", dir.display());
    println!(
        "judge: {} (reference: its {} training clips)",
        judge_dir.display(),
        train.len()
    );
    print_score("real test clips:", &real_score);
    print_score("codec round trip:", &codec_score);
    print_score("generated clips:", &gen_score);
    println!(
        "generated {}",
        clip_levels(&generated.clips, format.sample_rate)
    );
    println!("real test {}", clip_levels(&test.clips, format.sample_rate));
    println!(
        "guidance={} steps={} temperature={} clips_per_s={clips_per_s:.1}",
        options.guidance, options.steps, options.temperature
    );
    print_last_line(&gen_score, prompt_scores.as_ref(), "clips");
    Ok(())
}

/// Duration range and mean peak / RMS levels of `clips`, and how many are silent or clipped.
fn clip_levels(clips: &[Vec<f32>], sample_rate: u32) -> String {
    let seconds: Vec<f64> = clips
        .iter()
        .map(|c| c.len() as f64 / sample_rate as f64)
        .collect();
    let peak = |c: &[f32]| c.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let rms = |c: &[f32]| (c.iter().map(|v| v * v).sum::<f32>() / c.len().max(1) as f32).sqrt();
    let n = clips.len().max(1) as f64;
    let silent = clips.iter().filter(|c| rms(c) < 1e-3).count();
    let clipped = clips.iter().filter(|c| peak(c) >= 0.999).count();
    format!(
        "clips: seconds {:.2}-{:.2} (mean {:.2}), mean peak {:.3}, mean rms {:.3}, silent {silent}, clipped {clipped}",
        seconds.iter().copied().fold(f64::INFINITY, f64::min),
        seconds.iter().copied().fold(0.0, f64::max),
        seconds.iter().sum::<f64>() / n,
        clips.iter().map(|c| peak(c) as f64).sum::<f64>() / n,
        clips.iter().map(|c| rms(c) as f64).sum::<f64>() / n,
    )
}
