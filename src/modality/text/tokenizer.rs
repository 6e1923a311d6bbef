//! Text codec: a `tokenizers` tokenizer, either character-level (one token per character, for
//! comparison with published tiny-shakespeare numbers) or byte-level BPE trained on the corpus.
//! Either way it is saved as a standard `tokenizer.json`.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::bpe::{BpeTrainerBuilder, Vocab, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::Tokenizer;

use crate::{Error, Result};

/// Which tokenizer to build for a new model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum TokenizerKind {
    /// One token per distinct character of the training corpus.
    Char,
    /// Byte-level BPE (GPT-2 style) with this many tokens, trained on the corpus.
    Bpe {
        /// Target vocabulary size (at least 256 + a few merges).
        vocab_size: usize,
    },
}

/// A text tokenizer with exact round trips.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl TextTokenizer {
    /// Builds the tokenizer `kind` from `corpus`.
    pub fn build(kind: TokenizerKind, corpus: &str) -> Result<Self> {
        match kind {
            TokenizerKind::Char => Self::char_level(corpus),
            TokenizerKind::Bpe { vocab_size } => Self::train_bpe(corpus, vocab_size),
        }
    }

    /// One token per distinct character of `corpus`, ids in code-point order.
    ///
    /// Built as a BPE model with no merges: every character is its own token and the `Fuse`
    /// decoder joins them back without separators.
    pub fn char_level(corpus: &str) -> Result<Self> {
        let chars: BTreeSet<char> = corpus.chars().collect();
        if chars.is_empty() {
            return Err(Error::Tokenizer(
                "cannot build a vocabulary from empty text".into(),
            ));
        }
        let vocab: Vocab = chars
            .iter()
            .enumerate()
            .map(|(i, c)| (c.to_string(), i as u32))
            .collect();
        let model = BPE::builder()
            .vocab_and_merges(vocab, vec![])
            .build()
            .map_err(tok_err)?;
        let mut inner = Tokenizer::new(model);
        inner.with_decoder(Some(Fuse::new()));
        Ok(Self { inner })
    }

    /// Byte-level BPE with `vocab_size` tokens, trained on `corpus`.
    pub fn train_bpe(corpus: &str, vocab_size: usize) -> Result<Self> {
        if corpus.is_empty() {
            return Err(Error::Tokenizer("cannot train BPE on empty text".into()));
        }
        let alphabet = ByteLevel::alphabet();
        if vocab_size <= alphabet.len() {
            return Err(Error::Tokenizer(format!(
                "BPE vocab_size must exceed the {} byte symbols, got {vocab_size}",
                alphabet.len()
            )));
        }
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .show_progress(false)
            .initial_alphabet(alphabet.into_iter().collect())
            .build()
            .into();
        let mut inner = Tokenizer::new(BPE::default());
        let byte_level = ByteLevel::default().add_prefix_space(false);
        inner.with_pre_tokenizer(Some(byte_level));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        inner
            .train(&mut trainer, corpus.lines().map(|l| format!("{l}\n")))
            .map_err(tok_err)?;
        Ok(Self { inner })
    }

    /// Loads a `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let err =
            |message: String| Error::Tokenizer(format!("loading {}: {message}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| err(format!("not JSON: {e}")))?;
        // tokenizers 0.23 panics on some malformed sections instead of returning an error
        // (found by tests/fuzz.rs); turn that into an error too.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {})); // the error below says it; no panic message
        let parsed = std::panic::catch_unwind(|| text.parse::<Tokenizer>());
        std::panic::set_hook(hook);
        let parsed = parsed.map_err(|_| err("malformed tokenizer.json".into()))?;
        Ok(Self {
            inner: parsed.map_err(|e| err(e.to_string()))?,
        })
    }

    /// Writes `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, false)
            .map_err(|e| Error::Tokenizer(format!("saving {}: {e}", path.display())))
    }

    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`; an error names any characters the vocabulary cannot represent.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let ids = self.encode_unchecked(text)?;
        if self.decode(&ids)? != text {
            let unknown: BTreeSet<char> = text
                .chars()
                .filter(|c| self.inner.token_to_id(&c.to_string()).is_none())
                .collect();
            return Err(Error::Input(format!(
                "text has characters outside the model's vocabulary: {:?}",
                unknown.into_iter().collect::<String>()
            )));
        }
        Ok(ids)
    }

    /// Token ids of `text`, silently dropping what the vocabulary cannot represent.
    fn encode_unchecked(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tok_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "First Citizen:\nBefore we proceed any further, hear me speak.\n";

    #[test]
    fn char_level_round_trips_and_orders_ids() {
        let tok = TextTokenizer::char_level(TEXT).unwrap();
        let distinct: BTreeSet<char> = TEXT.chars().collect();
        assert_eq!(tok.vocab_size(), distinct.len());
        let ids = tok.encode(TEXT).unwrap();
        assert_eq!(ids.len(), TEXT.chars().count());
        assert_eq!(tok.decode(&ids).unwrap(), TEXT);
        assert_eq!(tok.encode("\n").unwrap(), vec![0]); // '\n' is the smallest code point
    }

    #[test]
    fn char_level_rejects_unknown_characters() {
        let tok = TextTokenizer::char_level(TEXT).unwrap();
        let err = tok.encode("hear me, Zeus!").unwrap_err().to_string();
        assert!(err.contains("outside the model's vocabulary"), "{err}");
        assert!(err.contains('Z') && err.contains('!'), "{err}");
    }

    #[test]
    fn bpe_round_trips_any_text_and_compresses() {
        let corpus = TEXT.repeat(20);
        let tok = TextTokenizer::train_bpe(&corpus, 300).unwrap();
        assert!(tok.vocab_size() <= 300 && tok.vocab_size() > 256);
        let ids = tok.encode(TEXT).unwrap();
        assert!(
            ids.len() < TEXT.len(),
            "{} tokens for {} bytes",
            ids.len(),
            TEXT.len()
        );
        let unseen = "Zebras ünd émoji 🦀\n";
        assert_eq!(tok.decode(&tok.encode(unseen).unwrap()).unwrap(), unseen);
    }

    #[test]
    fn save_and_load_give_the_same_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let tok = TextTokenizer::char_level(TEXT).unwrap();
        tok.save(&path).unwrap();
        let loaded = TextTokenizer::load(&path).unwrap();
        assert_eq!(loaded.encode(TEXT).unwrap(), tok.encode(TEXT).unwrap());
    }

    #[test]
    fn empty_text_is_an_error() {
        assert!(TextTokenizer::char_level("").is_err());
        assert!(TextTokenizer::train_bpe("", 300).is_err());
    }
}
