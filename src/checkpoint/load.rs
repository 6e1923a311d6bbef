//! Loading checkpoints: `config.json` checked first (format version, architecture), then
//! the model rebuilt from it and its weights (and tokenizer) loaded and checked against it.

use std::path::Path;

use burn::prelude::*;

use super::{
    checkpoint_err, load_weights, read_json, verify, CheckpointConfig, ModelConfig, CONFIG_FILE,
    FORMAT_VERSION, TOKENIZER_FILE, WEIGHTS_FILE,
};
use crate::modality::audio::AudioModel;
use crate::modality::image::ImageModel;
use crate::modality::judge::Classifier;
use crate::modality::multi::MultiModel;
use crate::modality::text::{TextModel, TextTokenizer};
use crate::modality::Modality;
use crate::{Error, Result};

/// Reads and checks `config.json` of the checkpoint in `dir`.
pub fn load_config(dir: &Path) -> Result<CheckpointConfig> {
    if !dir.is_dir() {
        return Err(checkpoint_err(
            dir,
            "not found (expected a directory with config.json and model.safetensors)".into(),
        ));
    }
    let path = dir.join(CONFIG_FILE);
    verify(&path)?;
    let value: serde_json::Value = read_json(&path)?;
    let version = value.get("format_version").and_then(|v| v.as_u64());
    if version != Some(FORMAT_VERSION as u64) {
        return Err(checkpoint_err(
            &path,
            format!(
                "format_version is {version:?} but this build reads version {FORMAT_VERSION}; \
                 use the aigc release that wrote it, or re-train"
            ),
        ));
    }
    let config: CheckpointConfig = serde_json::from_value(value).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    match &config.model {
        ModelConfig::Text(text) => text.validate()?,
        ModelConfig::Image(image) => image.validate()?,
        ModelConfig::Audio(audio) => {
            audio.validate()?;
            audio.stats()?;
        }
        ModelConfig::Classifier(classifier) => classifier.validate()?,
        ModelConfig::Multi(multi) => {
            multi.validate()?;
            if let Some(audio) = &multi.audio {
                audio.with_core(&multi.core).stats()?;
            }
        }
    }
    Ok(config)
}

/// Loads a text model and its tokenizer from `dir`, checking that everything agrees.
pub fn load_text(
    dir: &Path,
    device: &Device,
) -> Result<(TextModel, TextTokenizer, CheckpointConfig)> {
    let config = load_config(dir)?;
    let ModelConfig::Text(text) = &config.model else {
        return Err(wrong_modality(dir, &config, Modality::Text));
    };
    let tokenizer = load_tokenizer_for(dir, text.vocab_size)?;
    let mut model = text.init(device)?;
    load_weights(&mut model, &dir.join(WEIGHTS_FILE))?;
    Ok((model, tokenizer, config))
}

/// The text model of a text or joint checkpoint in `dir` (a joint model's shares its core),
/// with its tokenizer.
pub fn load_any_text(dir: &Path, device: &Device) -> Result<(TextModel, TextTokenizer)> {
    match load_config(dir)?.model {
        ModelConfig::Multi(_) => load_multi(dir, device).map(|(m, t, _)| (m.text(), t)),
        _ => load_text(dir, device).map(|(m, t, _)| (m, t)),
    }
}

/// The `tokenizer.json` in `dir`, which must have exactly `vocab_size` tokens.
pub(crate) fn load_tokenizer_for(dir: &Path, vocab_size: usize) -> Result<TextTokenizer> {
    verify(&dir.join(TOKENIZER_FILE))?;
    let tokenizer = TextTokenizer::load(&dir.join(TOKENIZER_FILE))?;
    if tokenizer.vocab_size() != vocab_size {
        return Err(checkpoint_err(
            dir,
            format!(
                "tokenizer.json has {} tokens but config.json says vocab_size = {}",
                tokenizer.vocab_size(),
                vocab_size
            ),
        ));
    }
    Ok(tokenizer)
}

/// Loads an image model from `dir`.
pub fn load_image(dir: &Path, device: &Device) -> Result<(ImageModel, CheckpointConfig)> {
    let config = load_config(dir)?;
    let ModelConfig::Image(image) = &config.model else {
        return Err(wrong_modality(dir, &config, Modality::Image));
    };
    let mut model = image.init(device)?;
    load_weights(&mut model, &dir.join(WEIGHTS_FILE))?;
    Ok((model, config))
}

/// Loads an audio model from `dir`.
pub fn load_audio(dir: &Path, device: &Device) -> Result<(AudioModel, CheckpointConfig)> {
    let config = load_config(dir)?;
    let ModelConfig::Audio(audio) = &config.model else {
        return Err(wrong_modality(dir, &config, Modality::Audio));
    };
    let mut model = audio.init(device)?;
    load_weights(&mut model, &dir.join(WEIGHTS_FILE))?;
    Ok((model, config))
}

/// Loads a joint model and its tokenizer from `dir`.
pub fn load_multi(
    dir: &Path,
    device: &Device,
) -> Result<(MultiModel, TextTokenizer, CheckpointConfig)> {
    let config = load_config(dir)?;
    let ModelConfig::Multi(multi) = &config.model else {
        return Err(checkpoint_err(
            dir,
            "is not a joint (multi) checkpoint".into(),
        ));
    };
    let tokenizer = load_tokenizer_for(dir, multi.vocab_size)?;
    let mut model = multi.init(device)?;
    load_weights(&mut model, &dir.join(WEIGHTS_FILE))?;
    Ok((model, tokenizer, config))
}

/// Loads an image classifier from `dir`.
pub fn load_classifier(dir: &Path, device: &Device) -> Result<(Classifier, CheckpointConfig)> {
    let config = load_config(dir)?;
    let ModelConfig::Classifier(classifier) = &config.model else {
        return Err(checkpoint_err(dir, "is not a classifier checkpoint".into()));
    };
    let mut model = classifier.init(device)?;
    load_weights(&mut model, &dir.join(WEIGHTS_FILE))?;
    Ok((model, config))
}

fn wrong_modality(dir: &Path, config: &CheckpointConfig, wanted: Modality) -> Error {
    checkpoint_err(
        dir,
        format!(
            "holds {} model, not {} model",
            with_article(config.model.kind()),
            with_article(&wanted.to_string())
        ),
    )
}

/// "a text", "an image", "an audio", "a joint".
pub(crate) fn with_article(kind: &str) -> String {
    match kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        true => format!("an {kind}"),
        false => format!("a {kind}"),
    }
}
