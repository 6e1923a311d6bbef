//! Judging samples with a classifier: conditional accuracy (is it recognisably the class asked
//! for?) and the Fréchet distance of classifier features to a real reference set (does the set
//! look like real data, in variety as well as in average?).

use super::{picture_batch, Classifier, Pictures};
use crate::modality::frechet::Gaussian;
use crate::modality::image::ImageShape;
use crate::Result;

/// How a set of labelled pictures fares under the judge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JudgeScore {
    /// Pictures scored.
    pub count: usize,
    /// Fraction the classifier assigns to their label.
    pub accuracy: f64,
    /// Fréchet distance of their features to the reference set's.
    pub frechet: f64,
    /// The part of `frechet` from the feature means alone (a shift all samples share).
    pub frechet_means: f64,
    /// Total variance of their features (the reference's is [`Gaussian::total_variance`]):
    /// below the real samples' means less varied samples.
    pub variance: f64,
}

/// Predicted classes and feature rows (`[n, features]`, row-major) of `images`.
pub fn classify(
    classifier: &Classifier,
    images: &[Vec<f32>],
    shape: &ImageShape,
) -> (Vec<usize>, Vec<f32>, usize) {
    let device = crate::default_device();
    let (mut predicted, mut features, mut width) = (Vec::new(), Vec::new(), 0);
    for chunk in images.chunks(256) {
        let refs: Vec<&[f32]> = chunk.iter().map(Vec::as_slice).collect();
        let f = classifier.features(picture_batch(&refs, shape, &device));
        width = f.dims()[1];
        let logits = classifier.logits(f.clone());
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

/// The feature distribution of `pictures` (the reference for Fréchet distances).
pub fn reference_features(classifier: &Classifier, pictures: &Pictures) -> Result<Gaussian> {
    let (_, features, width) = classify(classifier, &pictures.values, &pictures.shape);
    Gaussian::fit(&features, width)
}

/// Accuracy and Fréchet distance of labelled `pictures` against `reference`.
pub fn score(
    classifier: &Classifier,
    pictures: &Pictures,
    reference: &Gaussian,
) -> Result<JudgeScore> {
    let (predicted, features, width) = classify(classifier, &pictures.values, &pictures.shape);
    let correct = predicted
        .iter()
        .zip(&pictures.labels)
        .filter(|(p, l)| p == l)
        .count();
    let fitted = Gaussian::fit(&features, width)?;
    let count = pictures.values.len();
    Ok(JudgeScore {
        count,
        accuracy: correct as f64 / count.max(1) as f64,
        frechet: fitted.frechet_distance(reference),
        frechet_means: fitted.mean_distance(reference),
        variance: fitted.total_variance(),
    })
}
