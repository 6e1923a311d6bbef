//! The judge of generated samples: a small CNN classifier trained on real data, and the
//! scores it gives a set of samples (conditional accuracy, Fréchet distance of its features).
//! Images are judged as they are; audio clips as log-mel spectrogram pictures.

mod classifier;
mod score;

pub use classifier::{picture_batch, Classifier, ClassifierConfig};
pub use score::{classify, reference_features, score, JudgeScore};

use crate::modality::image::ImageShape;

/// Labelled pictures (`[C, H, W]` each) that a judge trains or is scored on.
#[derive(Debug, Clone)]
pub struct Pictures {
    /// Geometry of every picture.
    pub shape: ImageShape,
    /// The pictures.
    pub values: Vec<Vec<f32>>,
    /// Their labels.
    pub labels: Vec<usize>,
}

impl Pictures {
    /// The first `per_class` pictures of each of `n_classes` classes, in order.
    pub fn first_per_class(&self, n_classes: usize, per_class: usize) -> Pictures {
        let mut taken = vec![0; n_classes];
        let (mut values, mut labels) = (Vec::new(), Vec::new());
        for (v, &l) in self.values.iter().zip(&self.labels) {
            if l < n_classes && taken[l] < per_class {
                taken[l] += 1;
                values.push(v.clone());
                labels.push(l);
            }
        }
        Pictures {
            shape: self.shape,
            values,
            labels,
        }
    }
}

/// The training and held-out pictures of a judge.
#[derive(Debug, Clone)]
pub struct JudgeData {
    /// Pictures the judge learns from.
    pub train: Pictures,
    /// Pictures its validation loss is measured on.
    pub test: Pictures,
}
