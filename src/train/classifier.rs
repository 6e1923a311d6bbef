//! Training the image classifier that judges generated images, through the same loop.

use std::ops::ControlFlow;
use std::path::Path;

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;

use super::{run_config, ImageData, MetricsLog, Progress, Session, Start, TrainConfig, Trainable};
use crate::checkpoint::{self, ModelConfig, TrainState};
use crate::modality::image::{image_batch, ClassifierConfig, ImageClassifier, ImageDataset};
use crate::Result;

/// Images `indices` of `data` as a `[B, C, H, W]` batch and their labels.
fn batch(data: &ImageDataset, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let images: Vec<Vec<f32>> = indices
        .iter()
        .map(|&i| data.shape.unpatchify(data.patches(i)))
        .collect();
    let refs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
    let labels: Vec<i64> = indices.iter().map(|&i| data.label(i) as i64).collect();
    let labels = Tensor::from_data(TensorData::new(labels, [indices.len()]), device);
    (image_batch(&refs, &data.shape, device), labels)
}

impl Trainable for ImageClassifier {
    type Data = ImageData;

    fn train_loss(
        &self,
        data: &ImageData,
        train: &TrainConfig,
        rng: &mut StdRng,
        device: &Device,
    ) -> Tensor<1> {
        let indices: Vec<usize> = (0..train.batch_size)
            .map(|_| rng.random_range(0..data.train.len()))
            .collect();
        let (images, labels) = batch(&data.train, &indices, device);
        self.loss(images, labels)
    }

    fn val_loss(&self, data: &ImageData, train: &TrainConfig) -> Result<f64> {
        let n = train.eval_windows.min(data.test.len());
        let device = crate::default_device();
        let indices: Vec<usize> = (0..n).collect();
        let mut total = 0.0;
        for chunk in indices.chunks(train.batch_size) {
            let (images, labels) = batch(&data.test, chunk, &device);
            total += self.loss(images, labels).into_scalar::<f32>() as f64 * chunk.len() as f64;
        }
        Ok(total / n.max(1) as f64)
    }

    fn units_per_step(train: &TrainConfig) -> usize {
        train.batch_size
    }
}

/// Trains an image classifier on the dataset at `data`, writing checkpoints to `out`.
pub fn pretrain_classifier(
    data: &Path,
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
    let images = ImageData::load_splits(data, model_config.image, model_config.n_classes)?;
    let save =
        |s: &Session<ImageClassifier>, metrics: &MetricsLog| s.save(out, &config, None, metrics);
    session.fit(&images, out, save, on_progress)?;
    Ok(session.state)
}
