//! Training metrics, one JSON object per line in `metrics.jsonl` inside the run directory.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// File name of the metrics log.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// One logged step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Steps completed.
    pub step: usize,
    /// Training loss of this step (nats per token).
    pub loss: f32,
    /// Learning rate of this step.
    pub lr: f64,
    /// Training throughput of the run so far.
    pub tokens_per_s: f64,
    /// Validation loss (nats per token), when this step evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Training tokens consumed so far.
    pub tokens_seen: u64,
    /// The validation loss of each part, for models of several (a joint model's modalities).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub val_parts: BTreeMap<String, f64>,
}

/// The append-only metrics log of a run.
///
/// It holds a path, not an open file: the run directory is replaced by each checkpoint save,
/// and a handle would keep writing into the replaced (deleted) directory.
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// Opens `dir/metrics.jsonl`, dropping entries past `step` (left by an interrupted run that
    /// is now resuming from an earlier checkpoint). A missing `dir` is not created here: the
    /// run's first checkpoint creates it whole, so a kill before then leaves nothing behind.
    pub fn open(dir: &Path, step: usize) -> Result<Self> {
        let path = dir.join(METRICS_FILE);
        if !dir.exists() {
            return Ok(Self { path });
        }
        let kept: Vec<String> = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .filter(|l| serde_json::from_str::<Metrics>(l).is_ok_and(|m| m.step <= step))
                .map(|l| format!("{l}\n"))
                .collect(),
            Err(_) => Vec::new(),
        };
        // Temp + rename: a kill here must not lose the lines already logged.
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, kept.concat()).map_err(|e| Error::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming into place", &path, e))?;
        Ok(Self { path })
    }

    /// Appends one line.
    pub fn append(&self, m: &Metrics) -> Result<()> {
        let line = serde_json::to_string(m).expect("metrics serialise") + "\n";
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| Error::io("writing", &self.path, e))
    }

    /// Copies the log into `dir` (a checkpoint being written).
    pub fn copy_into(&self, dir: &Path) -> Result<()> {
        let target = dir.join(METRICS_FILE);
        if !self.path.exists() {
            // the first checkpoint of a fresh run: nothing logged yet
            return std::fs::write(&target, "").map_err(|e| Error::io("writing", &target, e));
        }
        std::fs::copy(&self.path, &target).map_err(|e| Error::io("copying", &target, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_log_creates_no_directory_until_the_first_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let log = MetricsLog::open(&run, 0).unwrap();
        assert!(
            !run.exists(),
            "a kill now must leave no half-made run directory"
        );
        let checkpoint = dir.path().join("run.tmp");
        std::fs::create_dir(&checkpoint).unwrap();
        log.copy_into(&checkpoint).unwrap();
        assert_eq!(
            std::fs::read_to_string(checkpoint.join(METRICS_FILE)).unwrap(),
            ""
        );
    }
}
