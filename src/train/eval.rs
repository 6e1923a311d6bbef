//! Scoring a model on held-out text: summed cross-entropy over non-overlapping windows, so
//! every token after the first is predicted exactly once.

use burn::prelude::*;

use crate::modality::text::{eval_windows, TextModel};
use crate::Result;

/// Total cross-entropy over a set of targets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Summed negative log-likelihood, in nats.
    pub nats: f64,
    /// Targets scored.
    pub targets: usize,
}

impl Score {
    /// Mean nats per scored token.
    pub fn nats_per_token(&self) -> f64 {
        self.nats / self.targets.max(1) as f64
    }
}

/// Scores `tokens` with windows of `seq_len`, `batch` windows per forward pass. With
/// `max_windows`, an evenly spread subset of the windows is scored instead of all of them.
pub fn evaluate(
    model: &TextModel,
    tokens: &[u32],
    seq_len: usize,
    batch: usize,
    max_windows: Option<usize>,
) -> Result<Score> {
    let device = crate::default_device();
    let mut windows = eval_windows(tokens.len(), seq_len);
    if let Some(max) = max_windows.filter(|&m| m < windows.len()) {
        let stride = windows.len() as f64 / max as f64;
        windows = (0..max)
            .map(|i| windows[(i as f64 * stride) as usize])
            .collect();
    }
    let mut score = Score {
        nats: 0.0,
        targets: 0,
    };
    // Full-length windows go in batches; a shorter last window goes on its own.
    let (full, short): (Vec<_>, Vec<_>) = windows.into_iter().partition(|&(_, len)| len == seq_len);
    for group in full.chunks(batch).chain(short.chunks(1)) {
        let len = group[0].1;
        let mut x = Vec::with_capacity(group.len() * len);
        let mut y = Vec::with_capacity(group.len() * len);
        for &(start, _) in group {
            x.extend(tokens[start..start + len].iter().map(|&t| t as i64));
            y.extend(tokens[start + 1..start + len + 1].iter().map(|&t| t as i64));
        }
        let shape = [group.len(), len];
        let x = Tensor::<2, Int>::from_data(TensorData::new(x, shape), &device);
        let y = Tensor::<2, Int>::from_data(TensorData::new(y, shape), &device);
        score.nats += model.loss_sum(x, y).into_scalar::<f32>() as f64;
        score.targets += group.len() * len;
    }
    Ok(score)
}

/// The validation-split score of a text model, per token and per character.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextScore {
    /// The raw score over validation tokens.
    pub score: Score,
    /// Characters covered by the scored targets.
    pub chars: usize,
}

impl TextScore {
    /// Cross-entropy per character: comparable across tokenizers.
    pub fn nats_per_char(&self) -> f64 {
        self.score.nats / self.chars.max(1) as f64
    }
}

/// Scores the whole validation split (last 10% of the characters) of `text`, every token
/// after the first predicted once from non-overlapping windows of the model's context.
pub fn evaluate_val_split(
    model: &TextModel,
    tokenizer: &crate::modality::text::TextTokenizer,
    text: &str,
    batch: usize,
) -> Result<TextScore> {
    let (_, val_text) = crate::modality::text::split_text(text);
    let tokens = tokenizer.encode(val_text)?;
    if tokens.len() < 2 {
        return Err(crate::Error::Input(
            "the validation split has fewer than 2 tokens".into(),
        ));
    }
    let score = evaluate(model, &tokens, model.max_seq_len(), batch, None)?;
    let first = tokenizer.decode(&tokens[..1])?.chars().count();
    Ok(TextScore {
        score,
        chars: val_text.chars().count() - first,
    })
}
