//! Images: a patch codec, IDX (MNIST) loading, and (to come) the patch adapter and decoder.

mod idx;
mod patch;

pub use idx::{parse_idx, read_idx, IdxArray};
pub use patch::ImageShape;
