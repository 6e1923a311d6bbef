//! Images: a patch codec, IDX (MNIST) and PNG/JPEG files, and the image model (patch
//! adapter, shared core, rectified-flow patch decoder).

mod dataset;
mod generate;
mod idx;
mod io;
mod model;
mod patch;

pub use dataset::ImageDataset;
pub use generate::generate_images;
pub use idx::{parse_idx, read_idx, IdxArray};
pub use io::{grid, read_image, to_bytes, to_image, write_png};
pub(crate) use model::ImageParts;
pub use model::{ImageModel, ImageModelConfig};
pub use patch::ImageShape;
