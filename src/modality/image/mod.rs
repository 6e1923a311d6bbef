//! Images: a patch codec, IDX (MNIST) and PNG/JPEG files, and the image model (patch
//! adapter, shared core, rectified-flow patch decoder).

mod classifier;
mod dataset;
mod eval;
mod generate;
mod idx;
mod io;
mod model;
mod patch;

pub use classifier::{image_batch, ClassifierConfig, ImageClassifier};
pub use dataset::ImageDataset;
pub use eval::{classify, real_images_per_class, reference_features, score_images, ImageScore};
pub use generate::generate_images;
pub use idx::{parse_idx, read_idx, IdxArray};
pub use io::{grid, read_image, to_bytes, write_png};
pub use model::{ImageModel, ImageModelConfig};
pub use patch::ImageShape;
