//! Pretrain a small character-level model on your own text through the library API, then
//! sample from it.
//!
//! ```sh
//! cargo run --release --example pretrain_text -- path/to/text.txt runs/my-model
//! ```
//! Without arguments it trains a tiny model on the first 50,000 characters of the shipped
//! tiny-shakespeare for a few seconds.

use std::ops::ControlFlow;
use std::path::PathBuf;

use aigc::checkpoint;
use aigc::modality::text::{generate, GenerateOptions};
use aigc::train::{pretrain_text, Start, TextRecipe};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join("aigc-pretrain-example");
    let (data, out) = match (args.next(), args.next()) {
        (Some(data), Some(out)) => (PathBuf::from(data), PathBuf::from(out)),
        _ => {
            let text = std::fs::read_to_string(root.join("datasets/tinyshakespeare/input.txt"))?;
            std::fs::create_dir_all(&out)?;
            let data = out.with_extension("txt");
            std::fs::write(&data, &text[..50_000])?;
            (data, out)
        }
    };
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }

    // Start from the tiny preset and make it a little bigger; every field is documented.
    let mut recipe = TextRecipe::tiny();
    recipe.core.max_seq_len = 64;
    recipe.train.seq_len = 64;
    recipe.train.steps = 200;
    recipe.train.eval_every = 50;
    recipe.train.checkpoint_every = 100;

    let state = pretrain_text(&data, &out, Start::Fresh(&recipe), |p| {
        if let Some(val) = p.val_loss {
            eprintln!(
                "step {:>4}  train {:.3}  val {:.3}  {:.0} tok/s",
                p.step, p.loss, val, p.units_per_s
            );
        }
        ControlFlow::Continue(())
    })?;
    eprintln!(
        "trained {} steps in {:.0} s -> {}",
        state.step,
        state.train_seconds,
        out.display()
    );

    let (model, tokenizer, _) = checkpoint::load_text(&out, &aigc::default_device())?;
    let sample = generate(&model, &tokenizer, "", &GenerateOptions::default(), |_| {})?;
    println!("{}", sample.text);
    Ok(())
}
