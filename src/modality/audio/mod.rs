//! Audio: WAV I/O, an STFT codec with Griffin-Lim inversion, FSDD-style datasets, and the
//! audio model (frame adapter, shared core, rectified-flow frame decoder).

mod codec;
mod dataset;
mod generate;
mod mel;
mod mixture;
mod model;
mod parts;
mod prior;
mod stft;
mod wav;

pub use codec::{
    decode_all, encode, peak_normalize, prepare, unit_magnitudes, AudioFormat, BinStats,
};
pub use dataset::AudioDataset;
pub use generate::generate_clips;
pub use mel::{log_mel_picture, mel_shape};
pub use model::{AudioModel, AudioModelConfig};
pub(crate) use parts::AudioParts;
pub use prior::{spread_picks, Mixture, Onset, OnsetPrior, OnsetPriorConfig};
pub use stft::{magnitudes, spectral_convergence, Stft};
pub use wav::{decode_wav, read_wav, resample, write_wav, MAX_WAV_SECONDS};
