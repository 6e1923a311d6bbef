//! The image front of the training loop: builds or loads an image model, loads the labelled
//! images, and writes image checkpoints.

use std::ops::ControlFlow;
use std::path::Path;

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;

use super::{
    fine_tune_config, run_config, with_core_from, ImageRecipe, MetricsLog, Progress, Session,
    Start, TrainConfig, Trainable,
};
use crate::checkpoint::{self, ModelConfig, TrainState};
use crate::modality::image::{ImageDataset, ImageModel, ImageShape};
use crate::modality::Split;
use crate::{Error, Result};

/// Training and held-out images.
pub struct ImageData {
    pub(crate) train: ImageDataset,
    pub(crate) test: ImageDataset,
}

impl ImageData {
    /// Loads both splits of the dataset at `path` for images of `shape`, checking that a model
    /// with `n_classes` classes covers its labels.
    pub fn load_splits(path: &Path, shape: ImageShape, n_classes: usize) -> Result<Self> {
        let train = ImageDataset::load(path, Split::Train, shape)?;
        let test = ImageDataset::load(path, Split::Test, shape)?;
        if train.classes.len() > n_classes {
            return Err(Error::Data {
                path: path.to_path_buf(),
                message: format!(
                    "has {} classes but the model has {n_classes}",
                    train.classes.len()
                ),
            });
        }
        Ok(Self { train, test })
    }
}

/// Patches and labels of `indices` as tensors; `null(k)` may replace the k-th label.
pub(super) fn batch(
    data: &ImageDataset,
    indices: &[usize],
    null: impl Fn(usize) -> Option<usize>,
    device: &Device,
) -> (Tensor<3>, Tensor<1, Int>) {
    let shape = data.shape;
    let mut patches = Vec::with_capacity(indices.len() * shape.n_values());
    let mut labels = Vec::with_capacity(indices.len());
    for (k, &i) in indices.iter().enumerate() {
        patches.extend_from_slice(data.patches(i));
        labels.push(null(k).unwrap_or(data.label(i)) as i64);
    }
    let b = indices.len();
    let patches = Tensor::from_data(
        TensorData::new(patches, [b, shape.n_patches(), shape.patch_dim()]),
        device,
    );
    let labels = Tensor::from_data(TensorData::new(labels, [b]), device);
    (patches, labels)
}

impl Trainable for ImageModel {
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
        let dropped: Vec<bool> = (0..train.batch_size)
            .map(|_| rng.random::<f64>() < train.label_dropout)
            .collect();
        let null = self.null_label();
        let (patches, labels) = batch(
            &data.train,
            &indices,
            |k| dropped[k].then_some(null),
            device,
        );
        self.loss(patches, labels)
    }

    fn val_loss(&self, data: &ImageData, train: &TrainConfig) -> Result<f64> {
        let n = train.eval_windows.min(data.test.len());
        let device = crate::default_device();
        let mut total = 0.0;
        let indices: Vec<usize> = (0..n).collect();
        for chunk in indices.chunks(train.batch_size) {
            let (patches, labels) = batch(&data.test, chunk, |_| None, &device);
            total += self.loss(patches, labels).into_scalar::<f32>() as f64 * chunk.len() as f64;
        }
        Ok(total / n.max(1) as f64)
    }

    fn units_per_step(train: &TrainConfig) -> usize {
        train.batch_size
    }
}

/// Trains a class-conditional image model on the dataset at `data`, writing checkpoints to `out`.
pub fn pretrain_image(
    data: &Path,
    out: &Path,
    start: Start<'_, ImageRecipe>,
    on_progress: impl FnMut(&Progress) -> ControlFlow<()>,
) -> Result<TrainState> {
    let device = crate::default_device().autodiff();
    let (mut session, config) = match start {
        Start::Fresh(
            recipe @ ImageRecipe {
                train: TrainConfig {
                    init: Some(from), ..
                },
                ..
            },
        ) => {
            let (model, base) = checkpoint::load_image(from, &device)?;
            let ModelConfig::Image(image_model) = base.model else {
                unreachable!("load_image returns image models")
            };
            let recipe = ImageRecipe {
                model: image_model,
                ..recipe.clone()
            };
            recipe.validate()?;
            let session = Session::fresh(&recipe.train, device, |_| Ok(model))?;
            let config = fine_tune_config(
                ModelConfig::Image(recipe.model),
                &recipe.train,
                base.sampling,
            );
            (session, config)
        }
        Start::Fresh(recipe) => {
            recipe.validate()?;
            let model = &recipe.model;
            let session = Session::fresh(&recipe.train, device, |d| {
                with_core_from(model.init(d)?, &model.core, &recipe.train)
            })?;
            let config = run_config(ModelConfig::Image(recipe.model.clone()), &recipe.train);
            (session, config)
        }
        Start::Resume => {
            let (model, config) = checkpoint::load_image(out, &device)?;
            (
                Session::resumed(out, model, config.train.clone(), device)?,
                config,
            )
        }
    };
    let ModelConfig::Image(model_config) = &config.model else {
        unreachable!("built or loaded as an image model above")
    };
    let images = ImageData::load_splits(data, model_config.image, model_config.n_classes)?;
    let save = |s: &Session<ImageModel>, metrics: &MetricsLog| s.save(out, &config, None, metrics);
    session.fit(&images, out, save, on_progress)?;
    Ok(session.state)
}
