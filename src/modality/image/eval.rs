//! Judging images with a classifier: conditional accuracy (is it recognisably the class asked
//! for?) and the Fréchet distance of classifier features to a real reference set (does the set
//! look like real data, in variety as well as in average?).

use super::{image_batch, ImageClassifier, ImageDataset, ImageShape};
use crate::modality::frechet::Gaussian;
use crate::Result;

/// How a set of labelled images fares under the judge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageScore {
    /// Images scored.
    pub count: usize,
    /// Fraction the classifier assigns to their label.
    pub accuracy: f64,
    /// Fréchet distance of their features to the reference set's.
    pub frechet: f64,
}

/// Predicted classes and feature rows (`[n, features]`, row-major) of `images`.
pub fn classify(
    classifier: &ImageClassifier,
    images: &[Vec<f32>],
    shape: &ImageShape,
) -> (Vec<usize>, Vec<f32>, usize) {
    let device = crate::default_device();
    let (mut predicted, mut features, mut width) = (Vec::new(), Vec::new(), 0);
    for chunk in images.chunks(256) {
        let refs: Vec<&[f32]> = chunk.iter().map(Vec::as_slice).collect();
        let f = classifier.features(image_batch(&refs, shape, &device));
        width = f.dims()[1];
        let logits = classifier.forward(image_batch(&refs, shape, &device));
        let classes: Vec<i64> = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_into_vec()
            .expect("int classes");
        predicted.extend(classes.into_iter().map(|c| c as usize));
        features.extend(f.into_data().try_into_vec::<f32>().expect("f32 features"));
    }
    (predicted, features, width)
}

/// The feature distribution of every image of `data` (the reference for Fréchet distances).
pub fn reference_features(classifier: &ImageClassifier, data: &ImageDataset) -> Result<Gaussian> {
    let images: Vec<Vec<f32>> = (0..data.len())
        .map(|i| data.shape.unpatchify(data.patches(i)))
        .collect();
    let (_, features, width) = classify(classifier, &images, &data.shape);
    Gaussian::fit(&features, width)
}

/// Accuracy and Fréchet distance of `images` labelled `labels` against `reference`.
pub fn score_images(
    classifier: &ImageClassifier,
    images: &[Vec<f32>],
    labels: &[usize],
    shape: &ImageShape,
    reference: &Gaussian,
) -> Result<ImageScore> {
    let (predicted, features, width) = classify(classifier, images, shape);
    let correct = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    let frechet = Gaussian::fit(&features, width)?.frechet_distance(reference);
    Ok(ImageScore {
        count: images.len(),
        accuracy: correct as f64 / images.len().max(1) as f64,
        frechet,
    })
}

/// The first `per_class` images of each class of `data`, with their labels.
pub fn real_images_per_class(data: &ImageDataset, per_class: usize) -> (Vec<Vec<f32>>, Vec<usize>) {
    let mut taken = vec![0; data.classes.len()];
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for i in 0..data.len() {
        let label = data.label(i);
        if taken[label] < per_class {
            taken[label] += 1;
            images.push(data.shape.unpatchify(data.patches(i)));
            labels.push(label);
        }
    }
    (images, labels)
}
