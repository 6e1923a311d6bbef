//! Training the classifier that judges generated samples, through the same loop.

use std::ops::ControlFlow;
use std::path::Path;

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;

use super::{run_config, MetricsLog, Progress, Session, Start, TrainConfig, Trainable};
use crate::checkpoint::{self, ModelConfig, TrainState};
use crate::modality::judge::{picture_batch, Classifier, ClassifierConfig, JudgeData, Pictures};
use crate::{Error, Result};

/// Pictures `indices` as a `[B, C, H, W]` batch and their labels.
fn batch(data: &Pictures, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let refs: Vec<&[f32]> = indices.iter().map(|&i| data.values[i].as_slice()).collect();
    let labels: Vec<i64> = indices.iter().map(|&i| data.labels[i] as i64).collect();
    let labels = Tensor::from_data(TensorData::new(labels, [indices.len()]), device);
    (picture_batch(&refs, &data.shape, device), labels)
}

impl Trainable for Classifier {
    type Data = JudgeData;

    fn train_loss(
        &self,
        data: &JudgeData,
        train: &TrainConfig,
        rng: &mut StdRng,
        device: &Device,
    ) -> Tensor<1> {
        let indices: Vec<usize> = (0..train.batch_size)
            .map(|_| rng.random_range(0..data.train.values.len()))
            .collect();
        let (pictures, labels) = batch(&data.train, &indices, device);
        self.loss(pictures, labels)
    }

    fn val_loss(&self, data: &JudgeData, train: &TrainConfig) -> Result<f64> {
        let n = train.eval_windows.min(data.test.values.len());
        let device = crate::default_device();
        let indices: Vec<usize> = (0..n).collect();
        let mut total = 0.0;
        for chunk in indices.chunks(train.batch_size) {
            let (pictures, labels) = batch(&data.test, chunk, &device);
            total += self.loss(pictures, labels).into_scalar::<f32>() as f64 * chunk.len() as f64;
        }
        Ok(total / n.max(1) as f64)
    }

    fn units_per_step(train: &TrainConfig) -> usize {
        train.batch_size
    }
}

/// Trains a classifier on `data`, writing checkpoints to `out`.
pub fn pretrain_classifier(
    data: &JudgeData,
    out: &Path,
    start: Start<'_, (ClassifierConfig, TrainConfig)>,
    on_progress: impl FnMut(&Progress) -> ControlFlow<()>,
) -> Result<TrainState> {
    let device = crate::default_device().autodiff();
    let (mut session, config) = match start {
        Start::Fresh((model, train)) => {
            model.validate()?;
            train.validate()?;
            let session = Session::fresh(train, device, |d| model.init(d))?;
            let config = run_config(ModelConfig::Classifier(model.clone()), train);
            (session, config)
        }
        Start::Resume => {
            let (model, config) = checkpoint::load_classifier(out, &device)?;
            (
                Session::resumed(out, model, config.train.clone(), device)?,
                config,
            )
        }
    };
    let ModelConfig::Classifier(model_config) = &config.model else {
        unreachable!("built or loaded as a classifier above")
    };
    let max_label = data.train.labels.iter().chain(&data.test.labels).max();
    if data.train.shape != model_config.image
        || max_label.is_some_and(|&l| l >= model_config.n_classes)
    {
        return Err(Error::Config(format!(
            "the judge's data ({:?}, labels up to {max_label:?}) does not fit its config {model_config:?}",
            data.train.shape
        )));
    }
    let save = |s: &Session<Classifier>, metrics: &MetricsLog| s.save(out, &config, None, metrics);
    session.fit(data, out, save, on_progress)?;
    Ok(session.state)
}
