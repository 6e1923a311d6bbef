//! The one checkpoint format: a directory that rebuilds its model with no other input.
//!
//! ```text
//! run/
//!   config.json        format version + model config (+ the training config that made it)
//!   model.safetensors  weights, readable from PyTorch (`safetensors.torch.load_file`)
//!   tokenizer.json     the text codec (Hugging Face `tokenizers` format)
//!   train_state.json   step, tokens seen, metrics, parameter ids for resuming
//!   optimizer.bpk      AdamW moments (burnpack); only in resumable checkpoints
//!   README.md          the model card
//! ```
//!
//! Writes go to a temporary sibling directory which is swapped into place, so a crash never
//! leaves a half-written checkpoint under the real name.

mod atomic;
mod checksums;
mod gpt2;
mod load;
mod param_ids;
mod transplant;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

pub use checksums::{verify, CHECKSUM_FILE};
pub use gpt2::{export_gpt2, import_gpt2};
pub use load::{
    load_any_text, load_audio, load_classifier, load_config, load_image, load_multi, load_text,
};
pub(crate) use load::{load_tokenizer_for, with_article};
pub use param_ids::restore_param_ids;
pub use transplant::load_core;

use atomic::{replace_dir, sibling, sync_dir_files};
use param_ids::param_ids;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::core::TransformerConfig;
use crate::modality::audio::AudioModelConfig;
use crate::modality::image::ImageModelConfig;
use crate::modality::judge::ClassifierConfig;
use crate::modality::multi::MultiModelConfig;
use crate::modality::text::{TextModelConfig, TextTokenizer};
use crate::modality::Modality;
use crate::train::TrainConfig;
use crate::{Error, Result};

/// Version of the directory layout and `config.json` schema this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// File names inside a checkpoint directory.
pub const CONFIG_FILE: &str = "config.json";
/// Weights file.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Tokenizer file.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Training progress file.
pub const TRAIN_STATE_FILE: &str = "train_state.json";
/// File name of the last step's weights, in runs that ship averaged weights as
/// [`WEIGHTS_FILE`] (resumable checkpoints only).
pub const TRAIN_WEIGHTS_FILE: &str = "train_weights.safetensors";
/// Optimizer state file.
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// Model card file.
pub const CARD_FILE: &str = "README.md";

/// A model's architecture, tagged by modality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "modality", rename_all = "snake_case")]
pub enum ModelConfig {
    /// A text model.
    Text(TextModelConfig),
    /// A class-conditional image model.
    Image(ImageModelConfig),
    /// A class-conditional audio model.
    Audio(AudioModelConfig),
    /// A CNN classifier of images or spectrograms (the judge of generated samples).
    Classifier(ClassifierConfig),
    /// A joint model: one core for text, images and audio.
    Multi(MultiModelConfig),
}

impl ModelConfig {
    /// The modality this model generates (a joint model: text, its first of several).
    pub fn modality(&self) -> Modality {
        match self {
            ModelConfig::Text(_) | ModelConfig::Multi(_) => Modality::Text,
            ModelConfig::Image(_) | ModelConfig::Classifier(_) => Modality::Image,
            ModelConfig::Audio(_) => Modality::Audio,
        }
    }

    /// What the checkpoint holds, in messages: "text", "image", "audio", "classifier" or
    /// "joint".
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Text(_) => "text",
            ModelConfig::Image(_) => "image",
            ModelConfig::Audio(_) => "audio",
            ModelConfig::Classifier(_) => "classifier",
            ModelConfig::Multi(_) => "joint",
        }
    }

    /// The Transformer core's architecture; none for the classifier, which has no core.
    pub fn core(&self) -> Option<&TransformerConfig> {
        match self {
            ModelConfig::Text(m) => Some(&m.core),
            ModelConfig::Image(m) => Some(&m.core),
            ModelConfig::Audio(m) => Some(&m.core),
            ModelConfig::Multi(m) => Some(&m.core),
            ModelConfig::Classifier(_) => None,
        }
    }
}

/// Contents of `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointConfig {
    /// Layout version; see [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The architecture.
    pub model: ModelConfig,
    /// The training run that produced the weights, if any.
    #[serde(default)]
    pub train: Option<TrainConfig>,
    /// Sampling settings that suit these weights better than the modality's defaults.
    #[serde(default, skip_serializing_if = "SamplingDefaults::is_empty")]
    pub sampling: SamplingDefaults,
}

/// A checkpoint's own sampling defaults (`sampling` in `config.json`): `aigc generate`, `aigc
/// eval` and [`Pipeline`](crate::Pipeline)'s `*_options` use them where no flag overrides them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingDefaults {
    /// Classifier-free guidance of images (the modality's default: 1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_guidance: Option<f32>,
    /// Classifier-free guidance of clips (the modality's default: 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_guidance: Option<f32>,
}

impl SamplingDefaults {
    /// Whether the checkpoint keeps every modality's defaults.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Contents of `train_state.json`: where training stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: usize,
    /// Training tokens consumed.
    pub tokens_seen: u64,
    /// Wall-clock seconds spent training (summed over resumed runs).
    pub train_seconds: f64,
    /// Mean training loss of the last logged interval (nats per token).
    pub train_loss: Option<f64>,
    /// Last validation loss (nats per token).
    pub val_loss: Option<f64>,
    /// Steps skipped for a NaN or infinite loss or gradient (see `skip_nonfinite_steps`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_steps: usize,
    /// Parameter path -> optimizer id, so optimizer state finds its parameters on resume.
    #[serde(default)]
    pub param_ids: BTreeMap<String, u64>,
}

/// Everything needed to write a checkpoint.
pub struct Checkpoint<'a, M: Module> {
    /// The config to write.
    pub config: &'a CheckpointConfig,
    /// The weights to generate with.
    pub model: &'a M,
    /// The weights the optimizer is training, when they differ from `model` (which then
    /// holds their moving average).
    pub train_weights: Option<&'a M>,
    /// The text codec, for models that read or write text.
    pub tokenizer: Option<&'a TextTokenizer>,
    /// Training progress.
    pub state: &'a TrainState,
    /// Optimizer state, for checkpoints that can be resumed.
    pub optimizer: Option<&'a ModuleOptimizer>,
    /// Model card text.
    pub card: &'a str,
}

impl<M: Module> Checkpoint<'_, M> {
    /// Writes the checkpoint to `dir`, replacing any previous one only once it is complete.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.save_with(dir, |_| Ok(()))
    }

    /// Like [`Checkpoint::save`], letting `extra` add files to the new directory first.
    ///
    /// A failed write (full disk, file size limit, unwritable directory) removes the
    /// half-written temporary directory and leaves the previous checkpoint as it was.
    pub fn save_with(&self, dir: &Path, extra: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        write_dir(dir, |tmp| {
            self.write_files(tmp)?;
            extra(tmp)
        })
    }

    /// Writes every file of the checkpoint into the empty directory `tmp`.
    fn write_files(&self, tmp: &Path) -> Result<()> {
        write_json(&tmp.join(CONFIG_FILE), self.config)?;
        let mut state = self.state.clone();
        state.param_ids = param_ids(self.train_weights.unwrap_or(self.model));
        write_json(&tmp.join(TRAIN_STATE_FILE), &state)?;
        save_weights(self.model, &tmp.join(WEIGHTS_FILE))?;
        if let Some(train_weights) = self.train_weights {
            save_weights(train_weights, &tmp.join(TRAIN_WEIGHTS_FILE))?;
        }
        if let Some(tokenizer) = self.tokenizer {
            tokenizer.save(&tmp.join(TOKENIZER_FILE))?;
        }
        if let Some(optim) = self.optimizer {
            let path = tmp.join(OPTIMIZER_FILE);
            optim
                .save(&path)
                .map_err(|e| checkpoint_err(&path, format!("writing optimizer state: {e}")))?;
        }
        let card = tmp.join(CARD_FILE);
        fs::write(&card, self.card).map_err(|e| Error::io("writing", &card, e))
    }
}

/// Writes a checkpoint directory at `dir`: `write` fills an empty temporary sibling, then
/// `SHA256SUMS` is written, every file synced, and the sibling swapped into place. A failed
/// write (full disk, file size limit, unwritable directory) removes the half-written sibling
/// and leaves the previous checkpoint as it was.
fn write_dir(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = sibling(dir, "tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| Error::io("removing", &tmp, e))?;
    }
    let written = fs::create_dir_all(&tmp)
        .map_err(|e| Error::io("creating", &tmp, e))
        .and_then(|()| write(&tmp))
        .and_then(|()| checksums::write(&tmp))
        .and_then(|()| sync_dir_files(&tmp));
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp); // best effort: frees the space it took
        let kept = if dir.exists() {
            "the previous checkpoint there is intact"
        } else {
            "nothing was saved"
        };
        return Err(checkpoint_err(
            dir,
            format!("could not save ({e}); {kept} (free some space or choose another --out)"),
        ));
    }
    replace_dir(&tmp, dir)
}

/// Writes a copy of the checkpoint in `from` to `to` (which may be `from`) with `config` in
/// place of its own. Every other top-level file is copied byte for byte (weights, training state,
/// tokenizer, model card, metrics log) except the optimizer state and training weights: the
/// copy generates and fine-tunes but does not resume. Crash-safe like [`Checkpoint::save`].
pub fn save_with_config(from: &Path, config: &CheckpointConfig, to: &Path) -> Result<()> {
    let skipped = [
        CONFIG_FILE,
        CHECKSUM_FILE,
        OPTIMIZER_FILE,
        TRAIN_WEIGHTS_FILE,
    ];
    write_dir(to, |tmp| {
        for entry in fs::read_dir(from).map_err(|e| Error::io("reading", from, e))? {
            let path = entry.map_err(|e| Error::io("reading", from, e))?.path();
            let name = path.file_name().unwrap_or_default();
            if path.is_file() && !skipped.iter().any(|s| name == *s) {
                fs::copy(&path, tmp.join(name)).map_err(|e| Error::io("copying", &path, e))?;
            }
        }
        write_json(&tmp.join(CONFIG_FILE), config)
    })
}

/// Reads `train_state.json` from `dir`.
pub fn load_train_state(dir: &Path) -> Result<TrainState> {
    let path = dir.join(TRAIN_STATE_FILE);
    verify(&path)?;
    read_json(&path)
}

fn save_weights<M: Module>(model: &M, path: &Path) -> Result<()> {
    let store =
        SafetensorsStore::from_file(path).metadata("format_version", FORMAT_VERSION.to_string());
    write_store(model, store, path)
}

fn write_store<M: Module>(model: &M, mut store: SafetensorsStore, path: &Path) -> Result<()> {
    model
        .save_into(&mut store)
        .map_err(|e| checkpoint_err(path, format!("writing weights: {e}")))
}

/// Writes `model`'s weights to the safetensors file `path` in PyTorch's conventions: keys are
/// the module paths (`core.blocks.0.attn.qkv.weight`, as listed by `aigc info`), linear
/// weights are `[out, in]` (`torch.nn.Linear`) and norm parameters are `weight` / `bias`, so
/// `model.load_state_dict(safetensors.torch.load_file(path))` fills a PyTorch module with the
/// same attribute names.
pub fn export_pytorch<M: Module>(model: &M, path: &Path) -> Result<()> {
    let store = SafetensorsStore::from_file(path)
        .with_to_adapter(burn::store::BurnToPyTorchAdapter)
        .metadata("exported_by", "aigc");
    write_store(model, store, path)
}

/// Loads the safetensors file at `path` into `model`, which must have exactly its tensors.
pub(crate) fn load_weights<M: Module>(model: &mut M, path: &Path) -> Result<()> {
    if !path.is_file() {
        return Err(checkpoint_err(path, "weights file not found".into()));
    }
    verify(path)?;
    apply_weights(model, SafetensorsStore::from_file(path), path, |_| false)
}

/// Loads every tensor of `store` (read from `path`) into `model`; a tensor the model lacks
/// is an error unless `ignored` accepts its name.
pub(crate) fn apply_weights<M: Module>(
    model: &mut M,
    mut store: SafetensorsStore,
    path: &Path,
    ignored: impl Fn(&str) -> bool,
) -> Result<()> {
    let result = model.load_from(&mut store).map_err(|e| {
        let hint = "the file is damaged, config.json describes another model, or an older aigc \
                    wrote it (joint models before the prompt reader: train them again)";
        checkpoint_err(path, format!("cannot load weights ({hint}): {e}"))
    })?;
    let unused: Vec<&String> = result.unused.iter().filter(|n| !ignored(n)).collect();
    if !unused.is_empty() {
        return Err(checkpoint_err(
            path,
            format!("unexpected tensors {unused:?}: the weights belong to another architecture"),
        ));
    }
    Ok(())
}

/// For `skip_serializing_if`: counters that are zero stay out of the JSON.
pub(crate) fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub(crate) fn checkpoint_err(path: &Path, message: String) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    }
}

/// Writes `value` as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    fs::write(path, pack_plain_arrays(&text) + "\n").map_err(|e| Error::io("writing", path, e))
}

/// Widest line [`pack_plain_arrays`] fills.
const PACKED_WIDTH: usize = 100;

/// `serde_json`'s pretty layout with every array of plain values (numbers, strings, booleans)
/// packed onto lines of up to [`PACKED_WIDTH`] columns instead of one value a line, so long
/// fitted arrays (codec statistics, an onset prior) stay readable.
fn pack_plain_arrays(pretty: &str) -> String {
    let lines: Vec<&str> = pretty.lines().collect();
    let mut out = String::with_capacity(pretty.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        out.push_str(line);
        out.push('\n');
        i += 1;
        if !line.ends_with('[') {
            continue;
        }
        let end = (i..lines.len()).find(|&j| !is_plain_element(lines[j]));
        let Some(end) = end.filter(|&j| lines[j].trim_start().starts_with(']')) else {
            continue;
        };
        if end == i {
            continue;
        }
        let indent = &lines[i][..lines[i].len() - lines[i].trim_start().len()];
        let mut packed = indent.to_string();
        for element in &lines[i..end] {
            let element = element.trim();
            if packed.len() > indent.len() && packed.len() + 1 + element.len() > PACKED_WIDTH {
                out.push_str(packed.trim_end());
                out.push('\n');
                packed = indent.to_string();
            }
            packed.push_str(element);
            packed.push(' ');
        }
        out.push_str(packed.trim_end());
        out.push('\n');
        i = end;
    }
    out.pop();
    out
}

/// Whether a line of pretty JSON is one plain array element (not an object or array).
fn is_plain_element(line: &str) -> bool {
    let element = line.trim().trim_end_matches(',');
    !element.is_empty()
        && !matches!(element.as_bytes()[0], b'{' | b'[' | b'}' | b']')
        && !element.ends_with(['{', '['])
}

/// Reads a JSON file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arrays of plain values share lines; nested arrays, objects and the values themselves
    /// come through unchanged.
    #[test]
    fn json_packs_plain_arrays_onto_lines() {
        let value = serde_json::json!({
            "mean": (0..60).map(|i| i as f32 / 7.0).collect::<Vec<_>>(),
            "voices": [["ann", "bob"], ["cy"]],
            "parts": [{"a": [1, 2]}, {"b": []}],
            "name": "x [y",
        });
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let packed = pack_plain_arrays(&pretty);
        let read: serde_json::Value = serde_json::from_str(&packed).unwrap();
        assert_eq!(read, value);
        assert!(
            packed.lines().count() * 2 < pretty.lines().count(),
            "{packed}"
        );
        assert!(packed.lines().all(|l| l.len() <= PACKED_WIDTH), "{packed}");
        assert!(packed.contains("\"ann\", \"bob\""), "{packed}");
    }

    /// `sampling` is left out of a config that keeps the defaults, read where present, and a
    /// misspelt setting is an error rather than silently the default.
    #[test]
    fn sampling_defaults_are_optional_and_checked() {
        let config = CheckpointConfig {
            format_version: FORMAT_VERSION,
            model: ModelConfig::Text(TextModelConfig::tiny(3)),
            train: None,
            sampling: SamplingDefaults::default(),
        };
        let mut json = serde_json::to_value(&config).unwrap();
        assert!(json.get("sampling").is_none(), "{json}");
        json["sampling"] = serde_json::json!({"image_guidance": 2.5});
        let read: CheckpointConfig = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(read.sampling.image_guidance, Some(2.5));
        assert_eq!(read.sampling.audio_guidance, None);
        json["sampling"] = serde_json::json!({"image_guidence": 2.5});
        let err = serde_json::from_value::<CheckpointConfig>(json).unwrap_err();
        assert!(err.to_string().contains("image_guidence"), "{err}");
    }

    #[test]
    fn saving_again_replaces_the_checkpoint_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let device = crate::default_device();
        let tokenizer = TextTokenizer::char_level("abc").unwrap();
        let config = CheckpointConfig {
            format_version: FORMAT_VERSION,
            model: ModelConfig::Text(TextModelConfig::tiny(3)),
            train: None,
            sampling: SamplingDefaults::default(),
        };
        let model = TextModelConfig::tiny(3).init(&device).unwrap();
        let save = |step, card| {
            let state = TrainState {
                step,
                ..TrainState::default()
            };
            let ckpt = Checkpoint {
                config: &config,
                model: &model,
                train_weights: None,
                tokenizer: Some(&tokenizer),
                state: &state,
                optimizer: None,
                card,
            };
            ckpt.save(&run).unwrap();
        };
        save(1, "first");
        save(2, "second");
        assert_eq!(fs::read_to_string(run.join(CARD_FILE)).unwrap(), "second");
        assert_eq!(load_train_state(&run).unwrap().step, 2);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("run")]);
        let (_, _, loaded) = load_text(&run, &device).unwrap();
        assert_eq!(loaded, config);
    }
}
