//! The README's promises: its quick-start command works with the shipped model, and the
//! shipped recipe file matches the built-in preset.

mod common;

use std::process::Command;

use aigc::train::TextRecipe;

#[test]
fn the_readme_generate_command_works_with_the_shipped_model() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    assert!(readme.contains("cargo run --release -- generate text --prompt \"ROMEO:\""));
    assert!(readme.contains("cargo test --release"));
    let out = Command::new(env!("CARGO_BIN_EXE_aigc"))
        .args([
            "generate",
            "text",
            "--prompt",
            "ROMEO:",
            "--max-tokens",
            "200",
            "--seed",
            "1",
        ])
        .current_dir(common::root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("ROMEO:") && text.chars().count() >= 200,
        "{text}"
    );
    // Shakespeare-like: mostly common English words.
    let words: Vec<&str> = text.split_whitespace().collect();
    let common_words = [
        "the", "and", "to", "of", "I", "my", "you", "a", "that", "in", "is", "not", "me", "with",
        "be",
    ];
    let hits = words
        .iter()
        .filter(|w| common_words.contains(&w.trim_matches(|c: char| !c.is_alphabetic())))
        .count();
    assert!(hits * 10 >= words.len(), "few common words in {text:?}");
}

#[test]
fn the_shipped_recipe_file_is_the_shakespeare_preset() {
    let path = common::root().join("configs/text-shakespeare.json");
    let recipe: TextRecipe = aigc::checkpoint::read_json(&path).unwrap();
    assert_eq!(recipe, TextRecipe::shakespeare());
}

#[test]
fn the_image_recipe_file_is_the_mnist_preset() {
    let path = common::root().join("configs/image-mnist.json");
    let recipe: aigc::train::ImageRecipe = aigc::checkpoint::read_json(&path).unwrap();
    assert_eq!(recipe, aigc::train::ImageRecipe::mnist());
}

#[test]
fn the_audio_recipe_file_is_the_fsdd_preset() {
    let path = common::root().join("configs/audio-fsdd.json");
    let recipe: aigc::train::AudioRecipe = aigc::checkpoint::read_json(&path).unwrap();
    assert_eq!(recipe, aigc::train::AudioRecipe::fsdd());
}

/// Every shipped checkpoint lists its config and weights in SHA256SUMS, and they match.
#[test]
fn shipped_checkpoints_carry_matching_checksums() {
    let models = common::root().join("models");
    for entry in std::fs::read_dir(models).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue; // models/README.md
        }
        let sums = std::fs::read_to_string(dir.join(aigc::checkpoint::CHECKSUM_FILE))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for file in ["config.json", "model.safetensors"] {
            assert!(sums.contains(&format!("  {file}\n")), "{}", dir.display());
        }
        for line in sums.lines() {
            let (_, file) = line.split_once("  ").unwrap();
            aigc::checkpoint::verify(&dir.join(file)).unwrap();
        }
    }
}
