//! Autoregressive text generation: prefill the prompt into the KV cache, then one position per
//! step, streaming decoded text as soon as it can no longer be part of a stop string.

use burn::prelude::*;

use super::{TextModel, TextTokenizer};
use crate::sample::{Sampler, SamplingConfig};
use crate::{Error, Result};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Tokens to generate at most.
    pub max_tokens: usize,
    /// Sampling controls.
    pub sampling: SamplingConfig,
    /// Generation stops before the first occurrence of any of these strings.
    pub stop: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingConfig::default(),
            stop: Vec::new(),
        }
    }
}

/// The result of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The generated text (without the prompt, cut before any stop string).
    pub text: String,
    /// Tokens in the prompt (after tokenization).
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Whether a stop string ended the generation.
    pub stopped: bool,
}

/// Generates a continuation of `prompt`, calling `on_text` with each new piece of text.
///
/// An empty prompt starts from a newline (or token 0 if the vocabulary has none). When the
/// cache fills the context, the newest half of the tokens is re-encoded and decoding goes on.
pub fn generate(
    model: &TextModel,
    tokenizer: &TextTokenizer,
    prompt: &str,
    options: &GenerateOptions,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    let mut sampler = Sampler::new(options.sampling.clone())?;
    let mut tokens = prompt_tokens(tokenizer, prompt)?;
    let context = model.max_seq_len();
    if tokens.len() > context {
        return Err(Error::Input(format!(
            "the prompt is {} tokens long but the model's context is {context} tokens; shorten it",
            tokens.len()
        )));
    }
    let prompt_len = tokens.len();
    let device = crate::default_device();
    let mut cache = model.new_cache();
    let mut stream = StopStream::new(&options.stop);
    let mut detokenizer = Detokenizer::new(prompt_len);
    let mut pending = tokens.clone(); // tokens not yet in the cache
    let mut stopped = false;
    for _ in 0..options.max_tokens {
        if cache.len() + pending.len() > context {
            // Slide the window: keep the newest half of the context and re-prefill it.
            cache.clear();
            pending = tokens[tokens.len() - context / 2..].to_vec();
        }
        let logits = model.forward_cached(token_tensor(&pending, &device), &mut cache);
        let next = sampler.sample(&last_position(logits), &tokens[prompt_len..]);
        tokens.push(next);
        pending = vec![next];
        let piece = detokenizer.next_piece(tokenizer, &tokens)?;
        if stream.push(&piece, &mut on_text) {
            stopped = true;
            break;
        }
    }
    if !stopped {
        // Text held back for an incomplete UTF-8 sequence that never completed.
        stopped = stream.push(&detokenizer.rest(tokenizer, &tokens)?, &mut on_text);
    }
    let text = stream.finish(&mut on_text);
    Ok(Generation {
        text,
        prompt_tokens: prompt_len,
        generated_tokens: tokens.len() - prompt_len,
        stopped,
    })
}

fn prompt_tokens(tokenizer: &TextTokenizer, prompt: &str) -> Result<Vec<u32>> {
    if !prompt.is_empty() {
        return tokenizer.encode(prompt);
    }
    Ok(tokenizer.encode("\n").unwrap_or_else(|_| vec![0]))
}

fn token_tensor(tokens: &[u32], device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(ids, [1, tokens.len()]), device)
}

/// # Shapes
/// - `logits`: `[1, T, V]`; returns the `V` logits of the last position.
fn last_position(logits: Tensor<3>) -> Vec<f32> {
    let [_, t, v] = logits.dims();
    let last = logits.narrow(1, t - 1, 1).reshape([v]);
    last.into_data()
        .try_into_vec::<f32>()
        .expect("logits are f32")
}

/// Turns a growing token sequence into new text, decoding only the few tokens since the last
/// piece (decoding everything each step would make long generations quadratic). A piece
/// ending in an incomplete UTF-8 sequence (U+FFFD) waits for the next token.
struct Detokenizer {
    /// Start of the tokens decoded for context (decoders may treat the first token specially).
    prefix: usize,
    /// End of the tokens whose text has been returned.
    read: usize,
}

impl Detokenizer {
    /// A detokenizer whose text starts after the first `start` tokens.
    fn new(start: usize) -> Self {
        Self {
            prefix: start,
            read: start,
        }
    }

    /// The text added by the tokens after the last returned piece (may be empty).
    fn next_piece(&mut self, tokenizer: &TextTokenizer, tokens: &[u32]) -> Result<String> {
        let piece = self.rest(tokenizer, tokens)?;
        if piece.is_empty() || piece.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        (self.prefix, self.read) = (self.read, tokens.len());
        Ok(piece)
    }

    /// The text not yet returned, even if it ends in an incomplete UTF-8 sequence.
    fn rest(&self, tokenizer: &TextTokenizer, tokens: &[u32]) -> Result<String> {
        let before = tokenizer.decode(&tokens[self.prefix..self.read])?;
        let now = tokenizer.decode(&tokens[self.prefix..])?;
        Ok(now.get(before.len()..).unwrap_or_default().to_string())
    }
}

/// Streams text while holding back anything that might still turn into a stop string or is
/// an incomplete UTF-8 sequence (shown by the decoder as U+FFFD).
struct StopStream<'a> {
    stops: &'a [String],
    text: String,
    emitted: usize,
}

impl<'a> StopStream<'a> {
    fn new(stops: &'a [String]) -> Self {
        Self {
            stops,
            text: String::new(),
            emitted: 0,
        }
    }

    /// Appends the next piece of text; returns true when a stop string appeared.
    fn push(&mut self, piece: &str, on_text: &mut impl FnMut(&str)) -> bool {
        self.text.push_str(piece);
        // Text that could start a stop string is never emitted, so one can only start here.
        let unsent = &self.text[self.emitted..];
        let stop_at = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| unsent.find(s.as_str()))
            .min();
        if let Some(at) = stop_at {
            self.text.truncate(self.emitted + at);
            return true;
        }
        let safe = self.text.len() - self.held_back();
        self.emit_to(safe, on_text);
        false
    }

    /// Length of the longest suffix of the text that is a proper prefix of a stop string.
    fn held_back(&self) -> usize {
        let mut longest = 0;
        for stop in self.stops {
            for (i, _) in stop.char_indices().skip(1) {
                if i > longest && self.text.ends_with(&stop[..i]) {
                    longest = i;
                }
            }
        }
        longest
    }

    fn emit_to(&mut self, end: usize, on_text: &mut impl FnMut(&str)) {
        if end > self.emitted && self.text.is_char_boundary(end) {
            on_text(&self.text[self.emitted..end]);
            self.emitted = end;
        }
    }

    fn finish(mut self, on_text: &mut impl FnMut(&str)) -> String {
        let end = self.text.len();
        self.emit_to(end, on_text);
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut stream = StopStream::new(&stops);
        let mut out = String::new();
        let mut stopped = false;
        for p in pieces {
            if stream.push(p, &mut |s| out.push_str(s)) {
                stopped = true;
                break;
            }
        }
        let final_text = stream.finish(&mut |s| out.push_str(s));
        (out, stopped, final_text)
    }

    #[test]
    fn stop_string_cuts_output_even_across_pieces() {
        let (out, stopped, text) = run(&["\n\n"], &["Hello", " there", "\n", "\n", "more"]);
        assert!(stopped);
        assert_eq!(out, "Hello there");
        assert_eq!(text, "Hello there");
    }

    #[test]
    fn held_back_prefix_is_released_when_it_does_not_complete() {
        let (out, stopped, _) = run(&["END"], &["a", "E", "N", "x"]);
        assert!(!stopped);
        assert_eq!(out, "aENx");
    }

    #[test]
    fn no_stops_streams_everything() {
        let (out, stopped, text) = run(&[], &["a", "b"]);
        assert!(!stopped);
        assert_eq!((out.as_str(), text.as_str()), ("ab", "ab"));
    }

    #[test]
    fn pieces_add_up_to_the_whole_decoded_text() {
        let corpus = "naïve café, déjà vu: naïve cafés ".repeat(20);
        for tokenizer in [
            TextTokenizer::char_level(&corpus).unwrap(),
            TextTokenizer::train_bpe(&corpus, 300).unwrap(),
        ] {
            let tokens = tokenizer.encode(&corpus[..60]).unwrap();
            let mut detokenizer = Detokenizer::new(3);
            let mut text = String::new();
            for end in 4..=tokens.len() {
                text += &detokenizer.next_piece(&tokenizer, &tokens[..end]).unwrap();
            }
            text += &detokenizer.rest(&tokenizer, &tokens).unwrap();
            assert_eq!(text, tokenizer.decode(&tokens[3..]).unwrap());
        }
    }
}
