//! Say a digit with the shipped spoken-digit model through the library API, and save the
//! clips as WAV files.
//!
//! ```sh
//! cargo run --release --example generate_audio -- 4 clips/
//! ```

use std::path::{Path, PathBuf};

use aigc::modality::audio::write_wav;
use aigc::modality::continuous::FlowGenerateOptions;
use aigc::Pipeline;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let digit: usize = args.next().unwrap_or_else(|| "4".into()).parse()?;
    let out = PathBuf::from(args.next().unwrap_or_else(|| "clips".into()));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/audio-fsdd");

    // The checkpoint's config.json holds the codec settings (rate, STFT, statistics).
    let pipeline = Pipeline::load(&dir)?;
    let options = FlowGenerateOptions {
        seed: 42,
        ..pipeline.audio_options() // the checkpoint's defaults: guidance 2, 16 steps, temperature 0.7
    };
    let clips = pipeline.generate_audio(&[Some(digit); 4], &options)?;
    std::fs::create_dir_all(&out)?;
    for (i, clip) in clips.iter().enumerate() {
        let path = out.join(format!("{digit}_{i}.wav"));
        write_wav(&path, &clip.samples, clip.sample_rate)?;
        let seconds = clip.samples.len() as f32 / clip.sample_rate as f32;
        eprintln!("{}: {seconds:.2} s", path.display());
    }
    Ok(())
}
