//! The model card written into every text checkpoint.

use crate::checkpoint::{CheckpointConfig, ModelConfig, TrainState};

/// A Markdown model card describing the architecture and training progress.
pub fn model_card(config: &CheckpointConfig, state: &TrainState) -> String {
    let ModelConfig::Text(model) = &config.model;
    let c = &model.core;
    let mut card = format!(
        "# aigc text model\n\n\
         Decoder-only Transformer: {} layers, d_model {}, {} heads, d_ff {}, context {}, \
         vocabulary {} tokens, positions {:?}, activation {:?}, dropout {}.\n\n\
         ## Training progress\n\n\
         | step | tokens seen | train time | train loss | val loss (nats/token) |\n\
         |---|---|---|---|---|\n\
         | {} | {} | {:.0} s | {} | {} |\n",
        c.n_layers,
        c.d_model,
        c.n_heads,
        c.d_ff,
        c.max_seq_len,
        model.vocab_size,
        c.positions,
        c.activation,
        c.dropout,
        state.step,
        state.tokens_seen,
        state.train_seconds,
        fmt_opt(state.train_loss),
        fmt_opt(state.val_loss),
    );
    if let Some(train) = &config.train {
        card += &format!(
            "\n## Training settings\n\n```json\n{}\n```\n",
            serde_json::to_string_pretty(train).unwrap_or_default()
        );
    }
    card += "\n## Use\n\n```sh\naigc generate text --model <this directory> --prompt \"ROMEO:\"\naigc eval text --model <this directory> --data <corpus>\n```\n";
    card
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}
