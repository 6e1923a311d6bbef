//! The `aigc` binary end to end on a tiny model, including every bad input the issue lists:
//! each must give a clear message and exit code 1, never a panic.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::aigc;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts a clean failure: exit code 1, no panic, and `needle` in the message.
fn fails_with(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1, stderr: {err}");
    assert!(
        !err.contains("panicked"),
        "panic instead of an error: {err}"
    );
    assert!(
        err.contains(needle),
        "stderr should mention {needle:?}: {err}"
    );
}

fn train_tiny(dir: &Path) -> String {
    let data = common::small_corpus(dir, 20_000);
    let out = dir.join("tiny");
    let o = aigc(&[
        "pretrain",
        "text",
        "--preset",
        "tiny",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "pretrain failed: {}", stderr(&o));
    assert!(stderr(&o).contains("done: 8 steps"), "{}", stderr(&o));
    out.to_str().unwrap().to_string()
}

#[test]
fn pretrain_generate_eval_info_on_a_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_tiny(dir.path());
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "train_state.json",
        "README.md",
        "metrics.jsonl",
    ] {
        assert!(Path::new(&model).join(file).is_file(), "missing {file}");
    }

    let generate = || {
        let args = ["--prompt", "ROMEO:", "--max-tokens", "30", "--seed", "3"];
        aigc(&[&["generate", "text", "--model", &model][..], &args].concat())
    };
    let o = generate();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("ROMEO:") && text.chars().count() >= 36,
        "{text:?}"
    );
    assert!(stderr(&o).contains("tokens/s"));
    let again = generate();
    assert_eq!(stdout(&again), text, "same seed, same text");

    let data = dir.path().join("corpus.txt");
    let o = aigc(&[
        "eval",
        "text",
        "--model",
        &model,
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let last = stdout(&o).lines().last().unwrap().to_string();
    let nats: f64 = last
        .strip_prefix("nats_per_char=")
        .expect("last line")
        .parse()
        .unwrap();
    assert!(nats > 1.0 && nats < 4.5, "a barely trained model: {nats}");

    let o = aigc(&["info", "--model", &model]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("modality: text") && stdout(&o).contains("trained: 8 steps"));

    // Resuming a finished run does nothing harmful; starting over on it is refused.
    let o = aigc(&[
        "pretrain",
        "text",
        "--data",
        data.to_str().unwrap(),
        "--out",
        &model,
        "--resume",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = aigc(&[
        "pretrain",
        "text",
        "--preset",
        "tiny",
        "--data",
        data.to_str().unwrap(),
        "--out",
        &model,
    ]);
    fails_with(&o, "--resume");
}

#[test]
fn bad_prompts_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_tiny(dir.path());
    let o = aigc(&[
        "generate",
        "text",
        "--model",
        &model,
        "--prompt",
        "ROMEO: 🦀 ~",
    ]);
    fails_with(&o, "outside the model's vocabulary");
    let long = "a".repeat(100); // the tiny model's context is 16
    let o = aigc(&["generate", "text", "--model", &model, "--prompt", &long]);
    fails_with(&o, "context is 16 tokens");
    let o = aigc(&["generate", "text", "--model", &model, "--top-p", "0"]);
    fails_with(&o, "top_p");
}

#[test]
fn missing_and_corrupt_checkpoints_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let o = aigc(&[
        "generate",
        "text",
        "--model",
        dir.path().join("nope").to_str().unwrap(),
    ]);
    fails_with(&o, "not found");

    let model = train_tiny(dir.path());
    let m = Path::new(&model);
    // Copies without SHA256SUMS, as after an edit by hand, so loading checks the contents.
    let copy_with = |name: &str, with_sums: bool| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in std::fs::read_dir(m).unwrap() {
            let f = f.unwrap().path();
            if with_sums || !f.ends_with(aigc::checkpoint::CHECKSUM_FILE) {
                std::fs::copy(&f, d.join(f.file_name().unwrap())).unwrap();
            }
        }
        d
    };
    let copy = |name: &str| copy_with(name, false);
    let gen = |d: &Path| {
        aigc(&[
            "generate",
            "text",
            "--model",
            d.to_str().unwrap(),
            "--max-tokens",
            "5",
        ])
    };

    let d = copy("truncated");
    let w = d.join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&gen(&d), "model.safetensors");

    // One flipped bit in the last weight: still a valid file, caught by the checksum.
    let d = copy_with("flipped", true);
    let w = d.join("model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&w, &bytes).unwrap();
    fails_with(&gen(&d), "SHA-256 mismatch");
    assert!(gen(&copy("flipped-unchecked")).status.success());

    let d = copy("garbage-config");
    std::fs::write(d.join("config.json"), "{ not json").unwrap();
    fails_with(&gen(&d), "config.json");

    let edit_config = |name: &str, from: &str, to: &str| {
        let d = copy(name);
        let cfg = std::fs::read_to_string(d.join("config.json")).unwrap();
        assert!(cfg.contains(from), "{from} not in {cfg}");
        std::fs::write(d.join("config.json"), cfg.replace(from, to)).unwrap();
        gen(&d)
    };
    let future = edit_config(
        "future-version",
        "\"format_version\": 1",
        "\"format_version\": 99",
    );
    fails_with(&future, "format_version");
    let invalid = edit_config("invalid-config", "\"n_heads\": 4", "\"n_heads\": 5");
    fails_with(&invalid, "divisible");
    // Weights that do not fit the config: extra tensors, missing tensors, wrong shapes.
    let fewer = edit_config("fewer-layers", "\"n_layers\": 2", "\"n_layers\": 1");
    fails_with(&fewer, "unexpected tensors");
    let more = edit_config("more-layers", "\"n_layers\": 2", "\"n_layers\": 3");
    fails_with(&more, "blocks.2");
    let wider = edit_config("wider-mlp", "\"d_ff\": 64", "\"d_ff\": 96");
    fails_with(&wider, "ShapeMismatch");

    let d = copy("no-tokenizer");
    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    fails_with(&gen(&d), "tokenizer");
}

#[test]
fn bad_training_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let pretrain = |data: &Path, extra: &[&str]| {
        let mut args = vec![
            "pretrain",
            "text",
            "--preset",
            "tiny",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        aigc(&args)
    };
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    fails_with(&pretrain(&empty, &[]), "empty");
    let binary = dir.path().join("binary.txt");
    std::fs::write(&binary, [0xc3, 0x28, 0xff]).unwrap();
    fails_with(&pretrain(&binary, &[]), "not UTF-8");
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "To be, or not to be").unwrap();
    fails_with(&pretrain(&short, &[]), "split has");
    let config = dir.path().join("bad.json");
    std::fs::write(&config, r#"{"tokenizer":{"type":"char"},"core":{"d_model":30,"n_heads":4,"n_layers":1,"d_ff":8,"max_seq_len":8},"train":{}}"#).unwrap();
    fails_with(
        &pretrain(&short, &["--config", config.to_str().unwrap()]),
        "bad.json",
    );
    let data = common::small_corpus(dir.path(), 5_000);
    let resume_nothing = aigc(&[
        "pretrain",
        "text",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out,
        "--resume",
    ]);
    fails_with(&resume_nothing, "not found");
}

/// Ctrl-C during training: the step in progress finishes, a checkpoint of it is saved, the
/// process exits with 130, and the checkpoint loads.
#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::small_corpus(dir.path(), 20_000);
    let out = dir.path().join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_aigc"))
        .args(["pretrain", "text", "--preset", "tiny", "--steps", "1000000"])
        .args([
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = out.join("metrics.jsonl");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 20 {
        assert!(started.elapsed().as_secs() < 120, "training never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: sends SIGINT to the child we spawned.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted: checkpoint of step"));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("train_state.json")).unwrap())
            .unwrap();
    let step = state["step"].as_u64().unwrap();
    assert!(step >= 20, "saved step {step}");
    let lines = std::fs::read_to_string(&metrics).unwrap().lines().count() as u64;
    assert_eq!(lines, step, "the checkpoint holds the last finished step");
    let info = aigc(&["info", "--model", out.to_str().unwrap()]);
    assert!(info.status.success(), "{}", stderr(&info));
}

/// Requests that would exhaust memory or disk are refused up front.
#[test]
fn absurd_sample_counts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for (modality, count) in [("image", "1000000"), ("audio", "0")] {
        let o = aigc(&[
            "generate",
            modality,
            "--count",
            count,
            "--out",
            out.to_str().unwrap(),
        ]);
        fails_with(&o, "--count must be between 1 and 10000");
    }
    assert!(!out.exists(), "nothing is written for a refused request");
}

/// Sampling and evaluation options that make no sense name the option at fault, including
/// negative numbers (parsed as values, not taken for flags).
#[test]
fn bad_sampling_options_name_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (
            &["generate", "image", "--steps", "0"],
            "steps must be positive",
        ),
        (
            &["generate", "image", "--temperature", "-1"],
            "temperature must be positive and finite, got -1",
        ),
        (
            &["generate", "audio", "--guidance", "nan"],
            "guidance must be a finite number",
        ),
        (
            &["generate", "text", "--min-p", "-0.5"],
            "min_p must be in [0, 1]",
        ),
        (
            &["eval", "image", "--per-class", "0"],
            "--per-class must be positive",
        ),
        (
            &["eval", "audio", "--per-class", "0"],
            "--per-class must be positive",
        ),
        (
            &["bench", "generate", "--preset", "image", "--count", "0"],
            "--count must be positive",
        ),
    ];
    for (args, needle) in cases {
        let mut args = args.to_vec();
        if args[0] == "generate" && args[1] != "text" {
            args.extend(["--out", out]);
        }
        fails_with(&aigc(&args), needle);
    }
    assert!(
        !Path::new(out).exists(),
        "nothing is written for a refused request"
    );
    // Refused before a missing judge is trained (minutes) and saved.
    let judge = dir.path().join("judge");
    let judge = judge.to_str().unwrap();
    let o = aigc(&["eval", "image", "--steps", "0", "--classifier", judge]);
    fails_with(&o, "steps must be positive");
    assert!(!Path::new(judge).exists(), "no judge was trained");
}
