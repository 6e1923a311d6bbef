//! The text pipeline end to end through the library: training learns, checkpoints round-trip,
//! resume is exact, generation is seeded.

mod common;

use std::ops::ControlFlow;

use aigc::checkpoint;
use aigc::modality::text::{generate, GenerateOptions};
use aigc::sample::SamplingConfig;
use aigc::train::{pretrain_text, Start, TextRecipe};
use burn::prelude::*;

#[test]
fn a_tiny_model_overfits_a_repetitive_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("abc.txt");
    std::fs::write(
        &data,
        "the quick brown fox jumps over the lazy dog\n".repeat(40),
    )
    .unwrap();
    let mut recipe = TextRecipe::tiny();
    recipe.train.steps = 150;
    recipe.train.eval_every = 50;
    let mut first = None;
    let state = pretrain_text(&data, &dir.path().join("run"), Start::Fresh(&recipe), |p| {
        first.get_or_insert(p.loss);
        ControlFlow::Continue(())
    })
    .unwrap();
    let first = first.unwrap();
    let last = state.train_loss.unwrap();
    assert!(
        first > 2.5,
        "an untrained model should be near ln(27) = 3.3, got {first}"
    );
    assert!(
        last < 0.5,
        "loss should fall below 0.5 nats on a repeated sentence, got {last}"
    );
    assert!(state.val_loss.unwrap() < 0.5);
}

#[test]
fn checkpoints_round_trip_to_identical_logits_and_resume_is_exact() {
    assert_resume_is_exact(&TextRecipe::tiny());
}

/// With a moving average, the checkpoint ships the average and resumes both the average and
/// the trained weights exactly.
#[test]
fn resume_is_exact_with_averaged_weights() {
    let mut recipe = TextRecipe::tiny();
    recipe.train.ema_decay = Some(0.9);
    let run = assert_resume_is_exact(&recipe);
    let shipped = std::fs::read(run.path().join("straight").join(checkpoint::WEIGHTS_FILE));
    let trained = std::fs::read(
        run.path()
            .join("straight")
            .join(checkpoint::TRAIN_WEIGHTS_FILE),
    );
    assert_ne!(shipped.unwrap(), trained.unwrap());
}

/// Trains `recipe` straight through and with an interruption at step 3, and checks both
/// runs end with identical weights and losses; returns the directory holding both runs.
fn assert_resume_is_exact(recipe: &TextRecipe) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let data = common::small_corpus(dir.path(), 20_000);
    let straight = dir.path().join("straight");
    pretrain_text(&data, &straight, Start::Fresh(recipe), |_| {
        ControlFlow::Continue(())
    })
    .unwrap();

    // Same run, interrupted after step 3 (not a checkpoint step), then resumed.
    let resumed = dir.path().join("resumed");
    let stopped = pretrain_text(&data, &resumed, Start::Fresh(recipe), |p| {
        if p.step == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(stopped.step, 3);
    let state = pretrain_text(
        &data,
        &resumed,
        Start::Resume,
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    assert_eq!(state.step, recipe.train.steps);

    let ids = [5, 9, 13, 2, 7];
    let a = common::logits_of(&straight, &ids);
    let b = common::logits_of(&resumed, &ids);
    assert_eq!(
        a, b,
        "resumed training must match uninterrupted training exactly"
    );
    // Loading twice gives identical logits too (and weights changed from the step-0 checkpoint).
    assert_eq!(a, common::logits_of(&straight, &ids));
    assert_eq!(common::losses(&straight).len(), recipe.train.steps);
    assert_eq!(common::losses(&straight), common::losses(&resumed));
    dir
}

#[test]
fn generation_is_seeded_and_greedy_follows_the_argmax() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::small_corpus(dir.path(), 20_000);
    let run = dir.path().join("run");
    pretrain_text(&data, &run, Start::Fresh(&TextRecipe::tiny()), |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let device = aigc::default_device();
    let (model, tokenizer, _) = checkpoint::load_text(&run, &device).unwrap();
    let options = |seed, temperature| GenerateOptions {
        max_tokens: 40, // longer than the 16-token context: exercises the sliding window
        sampling: SamplingConfig {
            seed,
            temperature,
            ..SamplingConfig::default()
        },
        stop: vec![],
    };
    let run_gen = |o: &GenerateOptions| generate(&model, &tokenizer, "First", o, |_| {}).unwrap();
    assert_eq!(
        run_gen(&options(1, 1.0)).text,
        run_gen(&options(1, 1.0)).text
    );
    assert_ne!(
        run_gen(&options(1, 1.0)).text,
        run_gen(&options(2, 1.0)).text
    );

    // Greedy: the first generated token is the argmax of the full forward's last logits.
    let greedy = run_gen(&options(0, 0.0));
    assert_eq!(greedy.generated_tokens, 40);
    let ids: Vec<i64> = tokenizer
        .encode("First")
        .unwrap()
        .iter()
        .map(|&t| t as i64)
        .collect();
    let x = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [1, ids.len()]), &device);
    let v = tokenizer.vocab_size();
    let logits: Vec<f32> = model.forward(x).into_data().try_into_vec().unwrap();
    let last = &logits[(ids.len() - 1) * v..];
    let best = aigc::sample::argmax(last);
    assert_eq!(tokenizer.encode(&greedy.text[..1]).unwrap()[0], best);
}

#[test]
fn a_bpe_model_trains_scores_per_character_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::small_corpus(dir.path(), 30_000);
    let run = dir.path().join("bpe");
    let mut recipe = TextRecipe::tiny();
    recipe.tokenizer = aigc::modality::text::TokenizerKind::Bpe { vocab_size: 400 };
    pretrain_text(&data, &run, Start::Fresh(&recipe), |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let device = aigc::default_device();
    let (model, tokenizer, _) = checkpoint::load_text(&run, &device).unwrap();
    assert!(tokenizer.vocab_size() > 256 && tokenizer.vocab_size() <= 400);
    let text = std::fs::read_to_string(&data).unwrap();
    let score = aigc::train::evaluate_val_split(&model, &tokenizer, &text, 8).unwrap();
    // BPE tokens span several characters, so there are fewer targets than characters.
    assert!(score.score.targets * 4 < score.chars * 3, "{score:?}");
    assert!(score.nats_per_char() < score.score.nats_per_token());
    let out = generate(
        &model,
        &tokenizer,
        "KING",
        &GenerateOptions::default(),
        |_| {},
    )
    .unwrap();
    assert!(!out.text.is_empty());
}
