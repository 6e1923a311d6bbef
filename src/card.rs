//! The model card written into every checkpoint: what the model is, how far it trained, the
//! settings that trained it, and how to use it.

use crate::checkpoint::{CheckpointConfig, ModelConfig, TrainState};

/// A Markdown model card describing the architecture and training progress.
pub fn model_card(config: &CheckpointConfig, state: &TrainState) -> String {
    let (title, about, usage) = match &config.model {
        ModelConfig::Text(m) => (
            "text",
            format!("vocabulary {} tokens, categorical head tied to the token embedding", m.vocab_size),
            "aigc generate text --model <this directory> --prompt \"ROMEO:\"\naigc eval text --model <this directory> --data <corpus>",
        ),
        ModelConfig::Image(m) => (
            "image",
            format!(
                "{}x{} images with {} channel(s) in {}x{} patches, {} classes, rectified-flow patch head {} wide x {} blocks",
                m.image.height, m.image.width, m.image.channels, m.image.patch_size, m.image.patch_size,
                m.n_classes, m.head_width, m.head_blocks
            ),
            "aigc generate image --model <this directory> --label 3 --count 8 --out samples/",
        ),
        ModelConfig::Audio(m) => (
            "audio",
            format!(
                "{} Hz clips of up to {} units of {} STFT frames (n_fft {}, hop {}), {} classes, \
                 rectified-flow frame head {} wide x {} blocks, Griffin-Lim {} iterations",
                m.format.sample_rate, m.format.max_units, m.format.frames_per_unit, m.format.n_fft,
                m.format.hop_len, m.n_classes, m.head_width, m.head_blocks, m.format.griffin_lim_iters
            ),
            "aigc generate audio --model <this directory> --label 3 --count 4 --out samples/",
        ),
        ModelConfig::Classifier(m) => (
            "classifier",
            format!(
                "a 2-layer CNN over {}x{} pictures (images, or log-mel spectrograms of clips), {} classes, {} features",
                m.image.height, m.image.width, m.n_classes, m.features
            ),
            "aigc eval image|audio --classifier <this directory>",
        ),
        ModelConfig::Multi(m) => (
            "joint",
            format!(
                "one core for text (vocabulary {} tokens){}{}; images and clips are \
                 conditioned on a class label or on the core's reading of a text prompt \
                 (at most {} tokens)",
                m.vocab_size,
                m.image.as_ref().map_or(String::new(), |i| format!(
                    ", {}x{} images in {} classes", i.image.height, i.image.width, i.n_classes
                )),
                m.audio.as_ref().map_or(String::new(), |a| format!(
                    ", {} Hz clips in {} classes", a.format.sample_rate, a.n_classes
                )),
                m.prompt_len
            ),
            "aigc generate text --model <this directory> --prompt \"ROMEO:\"\n\
             aigc generate image --model <this directory> --prompt \"a handwritten seven\" --out samples/\n\
             aigc generate audio --model <this directory> --prompt \"say four\" --out samples/",
        ),
    };
    let Some(core) = config.model.core() else {
        return classifier_card(about, config, state);
    };
    let mut card = format!(
        "# aigc {title} model\n\n\
         Decoder-only Transformer core: {} layers, d_model {}, {} heads, d_ff {}, context {}, \
         positions {:?}, activation {:?}, dropout {}; {about}.\n\n\
         ## Training progress\n\n\
         | step | units seen | train time | train loss | val loss |\n\
         |---|---|---|---|---|\n\
         | {} | {} | {:.0} s | {} | {} |\n",
        core.n_layers,
        core.d_model,
        core.n_heads,
        core.d_ff,
        core.max_seq_len,
        core.positions,
        core.activation,
        core.dropout,
        state.step,
        state.tokens_seen,
        state.train_seconds,
        fmt_opt(state.train_loss),
        fmt_opt(state.val_loss),
    );
    if let Some(train) = &config.train {
        let json = serde_json::to_string_pretty(train).unwrap_or_default();
        card += &format!("\n## Training settings\n\n```json\n{json}\n```\n");
    }
    card + &format!("\n## Use\n\n```sh\n{usage}\n```\n")
}

fn classifier_card(about: String, config: &CheckpointConfig, state: &TrainState) -> String {
    format!(
        "# aigc classifier\n\nA judge for generated samples: {about}.\n\n\
         Trained {} steps in {:.0} s; validation cross-entropy {}.\n\n\
         Training settings:\n\n```json\n{}\n```\n",
        state.step,
        state.train_seconds,
        fmt_opt(state.val_loss),
        config
            .train
            .as_ref()
            .map_or(String::new(), |t| serde_json::to_string_pretty(t)
                .unwrap_or_default())
    )
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}
