//! Text: a tokenizer (the codec), a token-embedding adapter and a categorical decoder tied to
//! the embedding, plus corpus loading and generation.

mod corpus;
mod generate;
mod model;
mod tokenizer;

pub use corpus::{eval_windows, read_text, split_text, Corpus, Split};
pub use generate::{generate, GenerateOptions, Generation};
pub use model::{TextModel, TextModelConfig};
pub use tokenizer::{TextTokenizer, TokenizerKind};
