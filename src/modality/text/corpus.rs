//! Text corpora: a file or a folder of `.txt` files, split by characters into train (first 90%)
//! and validation (last 10%), as nanoGPT does for tiny-shakespeare.

use std::path::{Path, PathBuf};

use rand::Rng;

use super::TextTokenizer;
use crate::{Error, Result};

/// Fraction of the characters used for training; the rest is the validation split.
pub const TRAIN_FRACTION: f64 = 0.9;

/// Which part of the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The first 90% of the characters.
    Train,
    /// The last 10%.
    Val,
}

/// A tokenized corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    train: Vec<u32>,
    val: Vec<u32>,
    /// Characters scored when every validation token after the first is a target.
    val_chars_scored: usize,
}

/// Largest corpus read: it is held in memory with its token ids (5 bytes per character).
pub const MAX_CORPUS_BYTES: u64 = 1 << 30;

/// Reads `path` (a UTF-8 file, or a folder whose `.txt` files are joined in name order).
pub fn read_text(path: &Path) -> Result<String> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::io("reading folder", path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut total = 0;
    for file in &files {
        total += std::fs::metadata(file)
            .map_err(|e| Error::io("reading", file, e))?
            .len();
    }
    if total > MAX_CORPUS_BYTES {
        return Err(Error::Data {
            path: path.to_path_buf(),
            message: format!(
                "{} MiB of text; corpora above {} MiB are refused (train on a sample of it)",
                total >> 20,
                MAX_CORPUS_BYTES >> 20
            ),
        });
    }
    let mut text = String::new();
    for file in &files {
        let bytes = std::fs::read(file).map_err(|e| Error::io("reading", file, e))?;
        let part = String::from_utf8(bytes).map_err(|e| Error::Data {
            path: file.clone(),
            message: format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        })?;
        text.push_str(&part);
    }
    if text.trim().is_empty() {
        let message = if files.is_empty() {
            "no .txt files found"
        } else {
            "the text is empty"
        };
        return Err(Error::Data {
            path: path.to_path_buf(),
            message: message.into(),
        });
    }
    Ok(text)
}

/// Splits `text` at 90% of its characters.
pub fn split_text(text: &str) -> (&str, &str) {
    let n_chars = text.chars().count();
    let cut_char = (n_chars as f64 * TRAIN_FRACTION) as usize;
    let cut = text
        .char_indices()
        .nth(cut_char)
        .map_or(text.len(), |(i, _)| i);
    text.split_at(cut)
}

impl Corpus {
    /// Tokenizes both splits of `text`. Each split needs at least `seq_len + 1` tokens.
    pub fn new(text: &str, tokenizer: &TextTokenizer, seq_len: usize, path: &Path) -> Result<Self> {
        let (train_text, val_text) = split_text(text);
        let train = tokenizer.encode(train_text)?;
        let val = tokenizer.encode(val_text)?;
        for (name, split) in [("train", &train), ("val", &val)] {
            if split.len() <= seq_len {
                return Err(Error::Data {
                    path: path.to_path_buf(),
                    message: format!(
                        "the {name} split has {} tokens; training with context {seq_len} needs more than that",
                        split.len()
                    ),
                });
            }
        }
        let first = tokenizer.decode(&val[..1])?.chars().count();
        let val_chars_scored = val_text.chars().count() - first;
        Ok(Self {
            train,
            val,
            val_chars_scored,
        })
    }

    /// The tokens of one split.
    pub fn tokens(&self, split: Split) -> &[u32] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// Characters covered by the validation targets (the denominator of nats per character).
    pub fn val_chars_scored(&self) -> usize {
        self.val_chars_scored
    }

    /// `batch` random windows of `seq_len + 1` tokens from `split`, as (inputs, targets),
    /// each `batch * seq_len` ids in row-major `[B, T]` order.
    pub fn random_batch(
        &self,
        split: Split,
        batch: usize,
        seq_len: usize,
        rng: &mut impl Rng,
    ) -> (Vec<i64>, Vec<i64>) {
        let tokens = self.tokens(split);
        let mut inputs = Vec::with_capacity(batch * seq_len);
        let mut targets = Vec::with_capacity(batch * seq_len);
        for _ in 0..batch {
            let start = rng.random_range(0..tokens.len() - seq_len);
            let window = &tokens[start..start + seq_len + 1];
            inputs.extend(window[..seq_len].iter().map(|&t| t as i64));
            targets.extend(window[1..].iter().map(|&t| t as i64));
        }
        (inputs, targets)
    }
}

/// Non-overlapping windows that make every token after the first a target exactly once:
/// `(start, len)` with inputs `tokens[start..start+len]`, targets shifted by one.
pub fn eval_windows(n_tokens: usize, seq_len: usize) -> Vec<(usize, usize)> {
    let targets = n_tokens.saturating_sub(1);
    (0..targets)
        .step_by(seq_len)
        .map(|start| (start, seq_len.min(targets - start)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn huge_corpora_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.txt");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_CORPUS_BYTES + 1).unwrap(); // sparse: no disk space used
        let err = read_text(&path).unwrap_err().to_string();
        assert!(
            err.contains("1024 MiB of text; corpora above 1024 MiB"),
            "{err}"
        );
    }

    #[test]
    fn split_is_ninety_ten_by_characters() {
        let text: String = "é".repeat(100);
        let (train, val) = split_text(&text);
        assert_eq!(train.chars().count(), 90);
        assert_eq!(val.chars().count(), 10);
    }

    #[test]
    fn eval_windows_score_every_target_once() {
        for (n, t) in [(10, 3), (10, 9), (11, 5), (2, 8)] {
            let windows = eval_windows(n, t);
            let covered: Vec<usize> = windows.iter().flat_map(|&(s, l)| s..s + l).collect();
            assert_eq!(covered, (0..n - 1).collect::<Vec<_>>(), "n={n} t={t}");
            assert!(windows.iter().all(|&(_, l)| l <= t));
        }
    }

    #[test]
    fn bad_corpora_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "  \n").unwrap();
        assert!(read_text(&empty).unwrap_err().to_string().contains("empty"));
        let binary = dir.path().join("binary.txt");
        std::fs::write(&binary, [0x66, 0xff, 0xfe]).unwrap();
        assert!(read_text(&binary)
            .unwrap_err()
            .to_string()
            .contains("not UTF-8"));
        let missing = dir.path().join("missing.txt");
        assert!(read_text(&missing)
            .unwrap_err()
            .to_string()
            .contains("missing.txt"));
        let folder = dir.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        assert!(read_text(&folder)
            .unwrap_err()
            .to_string()
            .contains("no .txt files"));
    }

    #[test]
    fn batches_are_shifted_windows() {
        let text = "abcdefghijklmnopqrstuvwxyz".repeat(4);
        let tok = TextTokenizer::char_level(&text).unwrap();
        let corpus = Corpus::new(&text, &tok, 4, Path::new("mem")).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let (x, y) = corpus.random_batch(Split::Train, 3, 4, &mut rng);
        assert_eq!(x.len(), 12);
        for (xi, yi) in x.iter().zip(&y) {
            assert_eq!((xi + 1) % 26, *yi);
        }
    }
}
