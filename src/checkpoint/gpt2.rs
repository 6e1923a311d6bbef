//! Import of GPT-2 checkpoints in Hugging Face's file layout: `config.json`,
//! `model.safetensors` and `tokenizer.json` (as `save_pretrained` writes them).
//!
//! GPT-2 is the text model with learned positions, LayerNorm with bias (eps 1e-5), GELU's
//! tanh approximation and a head tied to the token embedding. Its `Conv1D` weights are stored
//! `[in, out]`, the layout of burn's `Linear`, so the tensors load as they are, renamed:
//!
//! | Hugging Face (`transformer.` prefix optional) | aigc |
//! |---|---|
//! | `wte.weight` | `tok_embed.weight` |
//! | `wpe.weight` | `core.pos_embed.weight` |
//! | `h.N.ln_1.weight` / `.bias` | `core.blocks.N.norm_attn.gamma` / `.beta` |
//! | `h.N.attn.c_attn.*` | `core.blocks.N.attn.qkv.*` |
//! | `h.N.attn.c_proj.*` | `core.blocks.N.attn.proj.*` |
//! | `h.N.ln_2.weight` / `.bias` | `core.blocks.N.norm_mlp.gamma` / `.beta` |
//! | `h.N.mlp.c_fc.*` | `core.blocks.N.mlp.fc_in.*` |
//! | `h.N.mlp.c_proj.*` | `core.blocks.N.mlp.fc_out.*` |
//! | `ln_f.weight` / `.bias` | `core.norm_out.gamma` / `.beta` |
//!
//! `lm_head.weight` (tied) and the attention-mask buffers of old checkpoints are skipped.
//! [`export_gpt2`] writes the same table ([`NAMES`]) backwards, so a GPT-2-shaped aigc text model loads
//! with `transformers.GPT2LMHeadModel.from_pretrained`.

use std::path::Path;

use burn::prelude::*;
use burn::store::SafetensorsStore;
use serde::Deserialize;

use super::{
    apply_weights, checkpoint_err, load_tokenizer_for, read_json, write_json, write_store,
};
use super::{CheckpointConfig, ModelConfig};
use super::{FORMAT_VERSION, TOKENIZER_FILE, WEIGHTS_FILE};
use crate::core::{Activation, Positions, TransformerConfig};
use crate::modality::text::{TextModel, TextModelConfig, TextTokenizer};
use crate::Result;

/// The fields of a Hugging Face GPT-2 `config.json` that shape the model.
#[derive(Debug, Deserialize)]
struct HfGpt2Config {
    vocab_size: usize,
    n_positions: usize,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    #[serde(default)]
    n_inner: Option<usize>,
    #[serde(default = "gelu_new")]
    activation_function: String,
    #[serde(default = "default_eps")]
    layer_norm_epsilon: f64,
    #[serde(default = "yes")]
    tie_word_embeddings: bool,
}

fn gelu_new() -> String {
    "gelu_new".into()
}

fn default_eps() -> f64 {
    1e-5
}

fn yes() -> bool {
    true
}

/// Hugging Face names (without the `transformer.` prefix) and the aigc names they load into.
/// `{i}` stands for a block index; an entry ending in `.` renames a prefix (`weight`, `bias`).
const NAMES: &[(&str, &str)] = &[
    ("wte.weight", "tok_embed.weight"),
    ("wpe.weight", "core.pos_embed.weight"),
    ("ln_f.weight", "core.norm_out.gamma"),
    ("ln_f.bias", "core.norm_out.beta"),
    ("h.{i}.ln_1.weight", "core.blocks.{i}.norm_attn.gamma"),
    ("h.{i}.ln_1.bias", "core.blocks.{i}.norm_attn.beta"),
    ("h.{i}.ln_2.weight", "core.blocks.{i}.norm_mlp.gamma"),
    ("h.{i}.ln_2.bias", "core.blocks.{i}.norm_mlp.beta"),
    ("h.{i}.attn.c_attn.", "core.blocks.{i}.attn.qkv."),
    ("h.{i}.attn.c_proj.", "core.blocks.{i}.attn.proj."),
    ("h.{i}.mlp.c_fc.", "core.blocks.{i}.mlp.fc_in."),
    ("h.{i}.mlp.c_proj.", "core.blocks.{i}.mlp.fc_out."),
];

/// `store` with key remapping from Hugging Face names to aigc names ([`NAMES`]), or the
/// other way round (`to_hf`, which also adds the `transformer.` prefix).
fn renamed(store: SafetensorsStore, to_hf: bool) -> SafetensorsStore {
    NAMES.iter().fold(store, |store, &(hf, ours)| {
        let (from, to, prefix) = match to_hf {
            true => (ours, hf, "transformer."),
            false => (hf, ours, ""),
        };
        let anchor = if from.ends_with('.') { "" } else { "$" };
        let pattern = from.replace('.', r"\.").replace("{i}", r"(\d+)");
        store.with_key_remapping(
            format!("^{pattern}{anchor}"),
            format!("{prefix}{}", to.replace("{i}", "${1}")),
        )
    })
}

/// Loads the GPT-2 checkpoint in `dir` as an aigc text model, with its tokenizer and the
/// config an aigc checkpoint of it would carry.
pub fn import_gpt2(
    dir: &Path,
    device: &Device,
) -> Result<(TextModel, TextTokenizer, CheckpointConfig)> {
    let config_path = dir.join("config.json");
    let hf: HfGpt2Config = read_json(&config_path)?;
    let unsupported =
        |what: String| checkpoint_err(&config_path, format!("{what} is not supported"));
    let activation = match hf.activation_function.as_str() {
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "gelu" => Activation::Gelu,
        other => return Err(unsupported(format!("activation_function {other:?}"))),
    };
    if (hf.layer_norm_epsilon - 1e-5).abs() > 1e-12 {
        return Err(unsupported(format!(
            "layer_norm_epsilon {}",
            hf.layer_norm_epsilon
        )));
    }
    if !hf.tie_word_embeddings {
        return Err(unsupported("an untied output head".into()));
    }
    let text = TextModelConfig {
        vocab_size: hf.vocab_size,
        core: TransformerConfig {
            d_model: hf.n_embd,
            n_heads: hf.n_head,
            n_layers: hf.n_layer,
            d_ff: hf.n_inner.unwrap_or(4 * hf.n_embd),
            max_seq_len: hf.n_positions,
            dropout: 0.0,
            positions: Positions::Learned,
            activation,
            bias: true,
            rope_theta: 10_000.0,
        },
    };
    let tokenizer = load_tokenizer_for(dir, text.vocab_size)?;
    let mut model = text.init(device)?;
    let weights = dir.join(WEIGHTS_FILE);
    let store = SafetensorsStore::from_file(&weights).with_key_remapping(r"^transformer\.", "");
    let store = renamed(store, false);
    let skipped = |name: &str| {
        name == "lm_head.weight"
            || name.ends_with(".attn.bias")
            || name.ends_with(".attn.masked_bias")
    };
    apply_weights(&mut model, store, &weights, skipped)?;
    let config = CheckpointConfig {
        format_version: FORMAT_VERSION,
        model: ModelConfig::Text(text),
        train: None,
        sampling: Default::default(),
    };
    Ok((model, tokenizer, config))
}

/// Writes a GPT-2-shaped text model (learned positions, biases, GELU) into `dir` as Hugging
/// Face GPT-2 files: `config.json`, `model.safetensors` and `tokenizer.json`.
pub fn export_gpt2(
    model: &TextModel,
    config: &TextModelConfig,
    tokenizer: &TextTokenizer,
    dir: &Path,
) -> Result<()> {
    let core = &config.core;
    let activation = match core.activation {
        Activation::GeluTanh => Some("gelu_new"),
        Activation::Gelu => Some("gelu"),
        Activation::SquaredRelu => None,
    };
    let (Some(activation), Positions::Learned, true) = (activation, core.positions, core.bias)
    else {
        return Err(checkpoint_err(
            dir,
            "only GPT-2-shaped text models (learned positions, biases, GELU) export as GPT-2; \
             `aigc export --format pytorch` writes any model"
                .into(),
        ));
    };
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io("creating", dir, e))?;
    let hf = serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": core.max_seq_len,
        "n_embd": core.d_model,
        "n_layer": core.n_layers,
        "n_head": core.n_heads,
        "n_inner": core.d_ff,
        "activation_function": activation,
        "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": true,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
    });
    write_json(&dir.join("config.json"), &hf)?;
    tokenizer.save(&dir.join(TOKENIZER_FILE))?;
    let weights = dir.join(WEIGHTS_FILE);
    let store = SafetensorsStore::from_file(&weights).metadata("format", "pt");
    let store = renamed(store, true);
    write_store(model, store, &weights)
}
