//! `SHA256SUMS`: the SHA-256 of every file that defines a checkpoint, in `sha256sum`'s format
//! (so `sha256sum -c SHA256SUMS` checks a checkpoint by hand too). Written with every
//! checkpoint; loading verifies each listed file it reads. The model card and the metrics log
//! are not covered: people edit cards, and training appends to the log between checkpoints.

use std::fs;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{
    checkpoint_err, CONFIG_FILE, OPTIMIZER_FILE, TOKENIZER_FILE, TRAIN_STATE_FILE,
    TRAIN_WEIGHTS_FILE, WEIGHTS_FILE,
};
use crate::{Error, Result};

/// File name of the checksums.
pub const CHECKSUM_FILE: &str = "SHA256SUMS";

const COVERED: [&str; 6] = [
    CONFIG_FILE,
    WEIGHTS_FILE,
    TOKENIZER_FILE,
    TRAIN_STATE_FILE,
    TRAIN_WEIGHTS_FILE,
    OPTIMIZER_FILE,
];

/// Writes `dir/SHA256SUMS` for the covered files present in `dir`.
pub(super) fn write(dir: &Path) -> Result<()> {
    let mut lines = String::new();
    for name in COVERED {
        let path = dir.join(name);
        if path.is_file() {
            lines.push_str(&format!("{}  {name}\n", sha256(&path)?));
        }
    }
    let path = dir.join(CHECKSUM_FILE);
    fs::write(&path, lines).map_err(|e| Error::io("writing", &path, e))
}

/// Checks `path` against the `SHA256SUMS` next to it. Files it does not list, and
/// checkpoints without one (written by hand or by other tools), pass unchecked.
pub fn verify(path: &Path) -> Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let sums = dir.join(CHECKSUM_FILE);
    let listing = match fs::read_to_string(&sums) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("reading", &sums, e)),
    };
    let name = name.to_string_lossy();
    let expected = listing.lines().find_map(|line| {
        let (hash, file) = line.split_once("  ")?;
        (file == name).then(|| hash.to_ascii_lowercase())
    });
    let Some(expected) = expected else {
        return Ok(());
    };
    let actual = sha256(path)?;
    if actual != expected {
        return Err(checkpoint_err(
            path,
            format!(
                "SHA-256 mismatch (expected {expected}, found {actual}): the file is corrupt or \
                 was changed after saving; restore it, or delete {CHECKSUM_FILE} to accept it"
            ),
        ));
    }
    Ok(())
}

fn sha256(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(|e| Error::io("reading", path, e))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|e| Error::io("reading", path, e))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_byte_is_caught_and_unlisted_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join(WEIGHTS_FILE);
        fs::write(&weights, b"some weights").unwrap();
        verify(&weights).unwrap(); // no SHA256SUMS yet
        write(dir.path()).unwrap();
        let listing = fs::read_to_string(dir.path().join(CHECKSUM_FILE)).unwrap();
        // sha256sum's format: 64 hex digits, two spaces, the name
        assert_eq!(listing.lines().count(), 1);
        assert!(listing.ends_with(&format!("  {WEIGHTS_FILE}\n")));
        verify(&weights).unwrap();
        fs::write(&weights, b"some weightz").unwrap();
        let err = verify(&weights).unwrap_err().to_string();
        assert!(err.contains("SHA-256 mismatch"), "{err}");
        let card = dir.path().join("README.md");
        fs::write(&card, "edited").unwrap();
        verify(&card).unwrap();
    }
}
