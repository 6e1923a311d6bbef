//! Text prompts built from class labels, so a joint model learns to follow prompts such as
//! "a handwritten seven" or "say four" from datasets that only carry labels. Each modality
//! has several phrasings for training and others held out, so evaluation can ask whether
//! the model follows wordings it never saw.

use crate::modality::text::TextTokenizer;
use crate::modality::Modality;
use crate::Result;

/// Phrasings seen in training; `{}` stands for the class name.
fn train_phrasings(modality: Modality) -> &'static [&'static str] {
    match modality {
        Modality::Image => &[
            "a handwritten {}",
            "the digit {}",
            "draw a {}",
            "number {}",
            "a {}",
            "{}",
        ],
        Modality::Audio => &[
            "say {}",
            "the word {}",
            "someone says {}",
            "{} spoken aloud",
            "a voice saying {}",
            "{}",
        ],
        Modality::Text => &["{}"],
    }
}

/// Phrasings never used in training, for evaluation.
fn held_out_phrasings(modality: Modality) -> &'static [&'static str] {
    match modality {
        Modality::Image => &["an image of a {}", "write the number {}"],
        Modality::Audio => &["speak the word {}", "pronounce {}"],
        Modality::Text => &["{}"],
    }
}

/// The name a prompt uses for class `name`: digits become words ("7" -> "seven"), any other
/// class name (a folder name) is used as it is.
pub fn class_word(name: &str) -> String {
    const WORDS: [&str; 10] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ];
    match name.parse::<usize>() {
        Ok(d) if d < 10 => WORDS[d].to_string(),
        _ => name.to_lowercase(),
    }
}

/// Every prompt for class `name` in `modality`: the training phrasings, or the held-out ones.
pub fn prompts(modality: Modality, name: &str, held_out: bool) -> Vec<String> {
    let phrasings = match held_out {
        false => train_phrasings(modality),
        true => held_out_phrasings(modality),
    };
    let word = class_word(name);
    phrasings.iter().map(|p| p.replace("{}", &word)).collect()
}

/// The training prompts of every class of `classes`, as token ids: `[class][phrasing]`.
pub fn encoded_prompts(
    tokenizer: &TextTokenizer,
    modality: Modality,
    classes: &[String],
) -> Result<Vec<Vec<Vec<u32>>>> {
    classes
        .iter()
        .map(|name| {
            let texts = prompts(modality, name, false);
            texts.iter().map(|t| tokenizer.encode(t)).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_phrasings_differ_from_training_ones() {
        for modality in [Modality::Image, Modality::Audio] {
            let train = prompts(modality, "7", false);
            let held_out = prompts(modality, "7", true);
            assert!(train.len() >= 5 && held_out.len() >= 2);
            assert!(held_out.iter().all(|p| !train.contains(p)), "{held_out:?}");
            assert!(train.iter().chain(&held_out).all(|p| p.contains("seven")));
        }
        assert_eq!(prompts(Modality::Audio, "cat", false)[0], "say cat");
    }
}
