//! Generate Shakespeare with the shipped model through the library API.
//!
//! ```sh
//! cargo run --release --example generate_text -- "ROMEO:"
//! ```

use std::io::Write;
use std::path::Path;

use aigc::modality::text::GenerateOptions;
use aigc::sample::SamplingConfig;
use aigc::Pipeline;

fn main() -> anyhow::Result<()> {
    let prompt = std::env::args().nth(1).unwrap_or_else(|| "ROMEO:".into());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/text-shakespeare");

    // A checkpoint rebuilds its model (and tokenizer) from its own files; no flags needed.
    let pipeline = Pipeline::load(&dir)?;

    let options = GenerateOptions {
        max_tokens: 300,
        sampling: SamplingConfig {
            seed: 42,
            temperature: 0.8,
            top_k: 40,
            ..SamplingConfig::default()
        },
        stop: vec!["\n\n\n".into()],
    };
    print!("{prompt}");
    let result = pipeline.generate_text(&prompt, &options, |piece| {
        print!("{piece}");
        let _ = std::io::stdout().flush();
    })?;
    println!();
    eprintln!("[{} tokens generated]", result.generated_tokens);
    Ok(())
}
