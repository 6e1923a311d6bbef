//! Moving a trained Transformer core into another model (`--core`): the core is
//! modality-agnostic, so a core trained on one modality can start (or, frozen, carry) a model
//! of another.

use std::path::Path;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};

use super::{checkpoint_err, load_config, verify, WEIGHTS_FILE};
use crate::core::TransformerConfig;
use crate::Result;

/// Loads the core weights (`core.*`) of the checkpoint in `dir` into `model`, whose core has
/// the architecture `core`; the two cores must match in everything but dropout.
pub fn load_core<M: Module>(model: &mut M, core: &TransformerConfig, dir: &Path) -> Result<()> {
    let source = load_config(dir)?;
    let Some(theirs) = source.model.core() else {
        return Err(checkpoint_err(
            dir,
            "this model has no Transformer core".into(),
        ));
    };
    let without_dropout = |c: &TransformerConfig| TransformerConfig {
        dropout: 0.0,
        ..c.clone()
    };
    if without_dropout(theirs) != without_dropout(core) {
        return Err(checkpoint_err(
            dir,
            format!("its core {theirs:?} differs from the new model's {core:?}"),
        ));
    }
    let path = dir.join(WEIGHTS_FILE);
    verify(&path)?;
    let mut store = SafetensorsStore::from_file(&path)
        .with_regex(r"^core\.")
        .allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| checkpoint_err(&path, format!("cannot load the core: {e}")))?;
    let missing: Vec<&str> = result
        .missing
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| p.starts_with("core."))
        .collect();
    if result.applied.is_empty() || !missing.is_empty() {
        return Err(checkpoint_err(
            &path,
            format!("the core's tensors {missing:?} are missing"),
        ));
    }
    Ok(())
}
