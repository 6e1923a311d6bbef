//! The text front of the training loop: builds or loads a text model and its tokenizer,
//! prepares the corpus, and writes text checkpoints.

use std::ops::ControlFlow;
use std::path::Path;

use burn::prelude::*;
use rand::rngs::StdRng;

use super::{
    evaluate, fine_tune_config, run_config, with_core_from, MetricsLog, Progress, Session, Start,
    TextRecipe, TrainConfig, Trainable,
};
use crate::checkpoint::{self, ModelConfig, TrainState};
use crate::modality::text::{
    read_text, split_text, Corpus, Split, TextModel, TextModelConfig, TextTokenizer,
};
use crate::Result;

/// A tokenized corpus ready for training.
pub struct TextData {
    corpus: Corpus,
}

impl TextData {
    /// Trains on `corpus`'s training split and validates on its validation split.
    pub fn new(corpus: Corpus) -> Self {
        Self { corpus }
    }
}

impl Trainable for TextModel {
    type Data = TextData;

    fn train_loss(
        &self,
        data: &TextData,
        train: &TrainConfig,
        rng: &mut StdRng,
        device: &Device,
    ) -> Tensor<1> {
        let (x, y) = data
            .corpus
            .random_batch(Split::Train, train.batch_size, train.seq_len, rng);
        let shape = [train.batch_size, train.seq_len];
        let x = Tensor::<2, Int>::from_data(TensorData::new(x, shape), device);
        let y = Tensor::<2, Int>::from_data(TensorData::new(y, shape), device);
        self.loss(x, y)
    }

    fn val_loss(&self, data: &TextData, train: &TrainConfig) -> Result<f64> {
        let tokens = data.corpus.tokens(Split::Val);
        let score = evaluate(
            self,
            tokens,
            train.seq_len,
            train.batch_size,
            Some(train.eval_windows),
        )?;
        Ok(score.nats_per_token())
    }

    fn units_per_step(train: &TrainConfig) -> usize {
        train.tokens_per_step()
    }
}

/// Trains a text model on the corpus at `data`, writing checkpoints to `out`.
///
/// `on_progress` sees every step; returning `ControlFlow::Break` saves a checkpoint and stops
/// early (a later `Start::Resume` continues exactly where it left off).
pub fn pretrain_text(
    data: &Path,
    out: &Path,
    start: Start<'_, TextRecipe>,
    on_progress: impl FnMut(&Progress) -> ControlFlow<()>,
) -> Result<TrainState> {
    let device = crate::default_device().autodiff();
    let text = read_text(data)?;
    let (mut session, tokenizer, config) = match start {
        Start::Fresh(
            recipe @ TextRecipe {
                train: TrainConfig {
                    init: Some(from), ..
                },
                ..
            },
        ) => {
            let (model, tokenizer, base) = checkpoint::load_text(from, &device)?;
            let ModelConfig::Text(text_model) = &base.model else {
                unreachable!("load_text returns text models")
            };
            TextRecipe {
                core: text_model.core.clone(),
                ..recipe.clone()
            }
            .validate()?;
            let session = Session::fresh(&recipe.train, device, |_| Ok(model))?;
            let config = fine_tune_config(base.model, &recipe.train, base.sampling);
            (session, tokenizer, config)
        }
        Start::Fresh(recipe) => {
            recipe.validate()?;
            let tokenizer = TextTokenizer::build(recipe.tokenizer, split_text(&text).0)?;
            let model = TextModelConfig {
                vocab_size: tokenizer.vocab_size(),
                core: recipe.core.clone(),
            };
            let session = Session::fresh(&recipe.train, device, |d| {
                with_core_from(model.init(d)?, &model.core, &recipe.train)
            })?;
            let config = run_config(ModelConfig::Text(model), &recipe.train);
            (session, tokenizer, config)
        }
        Start::Resume => {
            let (model, tokenizer, config) = checkpoint::load_text(out, &device)?;
            (
                Session::resumed(out, model, config.train.clone(), device)?,
                tokenizer,
                config,
            )
        }
    };
    let corpus = Corpus::new(&text, &tokenizer, session.train.seq_len, data)?;
    let save = |s: &Session<TextModel>, metrics: &MetricsLog| {
        s.save(out, &config, Some(&tokenizer), metrics)
    };
    session.fit(&TextData { corpus }, out, save, on_progress)?;
    Ok(session.state)
}
