//! GPT-2 import, checked against `tests/fixtures/gpt2-tiny`: a tiny random GPT-2 in Hugging
//! Face's layout with the token ids, logits and greedy continuation `transformers` computed
//! for it (`tools/gpt2_fixture.py` writes it).

mod common;

use std::path::PathBuf;

use aigc::modality::text::{generate, GenerateOptions};
use aigc::sample::SamplingConfig;
use burn::prelude::*;
use common::aigc;
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    prompts: Vec<Prompt>,
    greedy: Greedy,
}

#[derive(Deserialize)]
struct Prompt {
    text: String,
    ids: Vec<u32>,
    logits: Vec<f32>,
    first_logits: Vec<f32>,
}

#[derive(Deserialize)]
struct Greedy {
    text: String,
    ids: Vec<u32>,
    generated: Vec<u32>,
}

fn fixture() -> (PathBuf, Reference) {
    let dir = common::root().join("tests/fixtures/gpt2-tiny");
    let reference = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    (dir, serde_json::from_str(&reference).unwrap())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn imported_gpt2_matches_transformers_token_for_token() {
    let (dir, reference) = fixture();
    let device = aigc::default_device();
    let (model, tokenizer, _) = aigc::checkpoint::import_gpt2(&dir, &device).unwrap();
    for prompt in &reference.prompts {
        let ids = tokenizer.encode(&prompt.text).unwrap();
        assert_eq!(ids, prompt.ids, "token ids of {:?}", prompt.text);
        let all = logits(&model, &ids); // (T, V) flattened
        let v = prompt.logits.len();
        let (first, last) = (&all[..v], &all[all.len() - v..]);
        let diff =
            max_abs_diff(last, &prompt.logits).max(max_abs_diff(first, &prompt.first_logits));
        assert!(diff < 1e-4, "logits of {:?} off by {diff}", prompt.text);
    }

    let greedy = &reference.greedy;
    assert_eq!(tokenizer.encode(&greedy.text).unwrap(), greedy.ids);
    let options = GenerateOptions {
        max_tokens: greedy.generated.len(),
        sampling: SamplingConfig {
            temperature: 0.0,
            ..SamplingConfig::default()
        },
        stop: Vec::new(),
    };
    let out = generate(&model, &tokenizer, &greedy.text, &options, |_| {}).unwrap();
    assert_eq!(out.text, tokenizer.decode(&greedy.generated).unwrap());
}

#[test]
fn import_then_generate_from_the_command_line() {
    let (dir, reference) = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("gpt2");
    let o = aigc(&[
        "import",
        "gpt2",
        "--from",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let greedy = &reference.greedy;
    let n = greedy.generated.len().to_string();
    let model = out.to_str().unwrap();
    let args = [
        "generate",
        "text",
        "--model",
        model,
        "--prompt",
        &greedy.text,
    ];
    let o = aigc(&[&args[..], &["--temperature", "0", "--max-tokens", &n]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tokenizer = aigc::modality::text::TextTokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let expected = format!(
        "{}{}\n",
        greedy.text,
        tokenizer.decode(&greedy.generated).unwrap()
    );
    assert_eq!(String::from_utf8(o.stdout).unwrap(), expected);
    // A second import into the same directory is refused; a folder without GPT-2 files fails.
    let again = aigc(&[
        "import",
        "gpt2",
        "--from",
        dir.to_str().unwrap(),
        "--out",
        model,
    ]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a checkpoint"));
    let empty = aigc(&[
        "import",
        "gpt2",
        "--from",
        tmp.path().to_str().unwrap(),
        "--out",
        "x",
    ]);
    assert!(String::from_utf8_lossy(&empty.stderr).contains("config.json"));
}

/// Logits of `ids` at every position, flattened.
fn logits(model: &aigc::modality::text::TextModel, ids: &[u32]) -> Vec<f32> {
    let device = aigc::default_device();
    let input: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(input, [1, ids.len()]), &device);
    model
        .forward(tokens)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
fn exports_load_back_unchanged() {
    let (dir, reference) = fixture();
    let device = aigc::default_device();
    let ids = &reference.prompts[1].ids;
    let (model, tokenizer, config) = aigc::checkpoint::import_gpt2(&dir, &device).unwrap();
    let aigc::checkpoint::ModelConfig::Text(text) = &config.model else {
        unreachable!()
    };
    let tmp = tempfile::tempdir().unwrap();

    // GPT-2 files: the same names, shapes and values as the fixture came with.
    let out = tmp.path().join("gpt2");
    aigc::checkpoint::export_gpt2(&model, text, &tokenizer, &out).unwrap();
    let (again, _, _) = aigc::checkpoint::import_gpt2(&out, &device).unwrap();
    assert_eq!(logits(&model, ids), logits(&again, ids));

    // PyTorch layout: read back through burn's PyTorch adapter into a fresh model.
    let file = tmp.path().join("model.safetensors");
    aigc::checkpoint::export_pytorch(&model, &file).unwrap();
    let mut fresh = text.init(&device).unwrap();
    let mut store = burn::store::SafetensorsStore::from_file(&file)
        .with_from_adapter(burn::store::PyTorchToBurnAdapter);
    use burn::store::ModuleSnapshot;
    let result = fresh.load_from(&mut store).unwrap();
    assert!(
        result.unused.is_empty() && result.missing.is_empty(),
        "{result:?}"
    );
    assert_eq!(logits(&model, ids), logits(&fresh, ids));
}
