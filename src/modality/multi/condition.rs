//! What an image or clip is conditioned on, and how the joint model turns it into the
//! condition slots its sequence starts with (one vector, repeated in each): a class's
//! embedding, "no condition", or the core's reading of a text prompt (see the
//! [`model`](super::model) docs).

use burn::nn::{Embedding, Linear};
use burn::prelude::*;

use super::model::missing;
use super::MultiModel;
use crate::modality::continuous::FlowGenerateOptions;
use crate::modality::Modality;
use crate::{Error, Result};

/// The weight of the prompt-reading alignment in an image or audio loss. It is relative to
/// each class embedding's squared norm, so a reading at zero costs 1, about 6x a trained
/// image step's flow loss and 1x an audio step's: strong enough that readings settle on
/// their classes early, while the flow loss still shapes what the class embeddings mean.
const ALIGN_WEIGHT: f64 = 1.0;

/// What an image or clip is conditioned on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// A class id.
    Label(usize),
    /// Token ids of a text prompt (at most `prompt_len`).
    Prompt(Vec<u32>),
    /// Nothing: unconditional samples, and the contrast of classifier-free guidance.
    Unconditional,
}

impl MultiModel {
    /// The condition slots of a training batch of `rows` rows and `ALIGN_WEIGHT` times the
    /// mean squared distance of each prompt's reading from its class's embedding (held
    /// fixed), relative to that embedding's squared norm; zero without prompts.
    pub(super) fn conditioned(
        &self,
        modality: Modality,
        rows: usize,
        conditions: &[Condition],
        labels: &[usize],
        device: &Device,
    ) -> Result<(Tensor<3>, Tensor<1>)> {
        if rows != conditions.len() {
            return Err(Error::Input(format!(
                "one condition per row: got {} conditions for {rows} rows",
                conditions.len()
            )));
        }
        if labels.len() != conditions.len() {
            return Err(Error::Input(format!(
                "one label per condition: got {} conditions and {} labels",
                conditions.len(),
                labels.len()
            )));
        }
        let n_classes = self.adapter(modality)?.n_classes;
        if let Some(bad) = labels.iter().find(|&&l| l >= n_classes) {
            return Err(Error::Input(format!(
                "label {bad} is outside the model's {n_classes} {modality} classes"
            )));
        }
        let (slots, reading) = self.condition_slots(modality, conditions, device)?;
        let Some(reading) = reading else {
            return Ok((slots, Tensor::zeros([1], device)));
        };
        let classes: Vec<i64> = conditions
            .iter()
            .zip(labels)
            .filter(|(c, _)| matches!(c, Condition::Prompt(_)))
            .map(|(_, &l)| l as i64)
            .collect();
        let n = classes.len();
        let classes = Tensor::<1, Int>::from_data(TensorData::new(classes, [n]), device);
        let target = self.adapter(modality)?.class_embed.weight.val();
        let target = target.select(0, classes).detach(); // (P, D)
        let squared = (reading - target.clone()).powi_scalar(2).sum_dim(1);
        let norm = target.powi_scalar(2).sum_dim(1) + 1e-12;
        let align = (squared / norm).mean() * ALIGN_WEIGHT;
        Ok((slots, align))
    }

    /// The condition slots of each row of an image or audio sequence (its condition in each
    /// of the `condition_slots`), and the readings of the prompt rows (in order), if any.
    ///
    /// # Shapes
    /// - returns `[B, S, D]` for `S` slots, and `[P, D]` for `P` prompts.
    pub(super) fn condition_slots(
        &self,
        modality: Modality,
        conditions: &[Condition],
        device: &Device,
    ) -> Result<(Tensor<3>, Option<Tensor<2>>)> {
        let adapter = self.adapter(modality)?;
        let b = conditions.len();
        let (class, prompts) = condition_rows(conditions, adapter.n_classes, modality)?;
        let class: Vec<i64> = class.into_iter().map(|r| r as i64).collect();
        let class = Tensor::<1, Int>::from_data(TensorData::new(class, [b]), device);
        let rows = adapter.class_embed.weight.val(); // (n_classes + 1, D)
        let d = rows.dims()[1];
        let fill = |one: Tensor<2>| one.reshape([b, 1, d]).expand([b, self.condition_slots, d]);
        if prompts.is_empty() {
            return Ok((fill(rows.select(0, class)), None));
        }
        let reading = self.read_prompts(adapter, &prompts, device)?; // (P, D)
        let slots = Tensor::cat(vec![rows, reading.clone()], 0).select(0, class);
        Ok((fill(slots), Some(reading)))
    }

    /// The class each condition stands for in `modality`: a label's own, `n_classes` for no
    /// condition, and for a prompt the class whose embedding its reading is nearest to,
    /// relative to that embedding's squared norm (the distance training pulls readings in).
    /// `reading` holds the prompts' readings in order, as [`MultiModel::condition_slots`]
    /// returns them; `None` reads them here.
    pub(super) fn condition_classes(
        &self,
        modality: Modality,
        conditions: &[Condition],
        reading: Option<Tensor<2>>,
        device: &Device,
    ) -> Result<Vec<usize>> {
        let adapter = self.adapter(modality)?;
        let n_classes = adapter.n_classes;
        let (rows, prompts) = condition_rows(conditions, n_classes, modality)?;
        if prompts.is_empty() {
            return Ok(rows);
        }
        let p = prompts.len();
        let reading = match reading {
            Some(reading) => reading,
            None => self.read_prompts(adapter, &prompts, device)?,
        }; // (P, D)
        let classes = adapter.class_embed.weight.val().narrow(0, 0, n_classes); // (C, D)
        let norms = classes
            .clone()
            .powi_scalar(2)
            .sum_dim(1)
            .reshape([1, n_classes]);
        let apart = reading.unsqueeze_dim::<3>(1) - classes.unsqueeze_dim::<3>(0); // (P, C, D)
        let relative = apart.powi_scalar(2).sum_dim(2).reshape([p, n_classes]) / (norms + 1e-12);
        let nearest: Vec<i64> = relative
            .argmin(1)
            .into_data()
            .convert::<i64>()
            .try_into_vec()
            .expect("int classes");
        // Rows past "no condition" are prompts, in order.
        Ok(rows
            .into_iter()
            .map(|r| match r > n_classes {
                true => nearest[r - n_classes - 1] as usize,
                false => r,
            })
            .collect())
    }

    /// The core's reading of each prompt: the linear map of its output at the "read" token
    /// after the left-padded prompt.
    ///
    /// # Shapes
    /// - returns `[P, D]`.
    fn read_prompts(
        &self,
        adapter: AdapterParts<'_>,
        prompts: &[&[u32]],
        device: &Device,
    ) -> Result<Tensor<2>> {
        let (p, l) = (prompts.len(), self.prompt_len);
        let vocab = self.tok_embed.weight.val().dims()[0];
        let mut ids = vec![0i64; p * l];
        let mut is_pad = vec![1.0f32; p * l];
        for (r, tokens) in prompts.iter().enumerate() {
            if tokens.len() > l {
                return Err(Error::Input(format!(
                    "the prompt is {} tokens long; this model reads at most {l}",
                    tokens.len()
                )));
            }
            if let Some(bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(Error::Input(format!(
                    "prompt token {bad} is outside the model's {vocab} token ids"
                )));
            }
            for (i, &t) in tokens.iter().enumerate() {
                let at = r * l + l - tokens.len() + i;
                ids[at] = t as i64;
                is_pad[at] = 0.0;
            }
        }
        let d = self.pad.weight.val().dims()[1];
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [p, l]), device);
        let is_pad = Tensor::<3>::from_data(TensorData::new(is_pad, [p, l, 1]), device);
        let pad = self.pad.weight.val().reshape([1, 1, d]);
        let tokens = self.tok_embed.forward(ids) * (is_pad.clone().neg() + 1.0) + pad * is_pad;
        let read = adapter
            .read
            .weight
            .val()
            .reshape([1, 1, d])
            .expand([p, 1, d]);
        let z = self.core.forward(Tensor::cat(vec![tokens, read], 1)); // (P, L + 1, D)
        Ok(adapter.read_out.forward(z.narrow(1, l, 1).reshape([p, d])))
    }

    /// The modules of `modality` that condition a sequence.
    fn adapter(&self, modality: Modality) -> Result<AdapterParts<'_>> {
        let absent = || missing(modality);
        Ok(match modality {
            Modality::Image => {
                let a = self.image.as_ref().ok_or_else(absent)?;
                AdapterParts {
                    class_embed: &a.class_embed,
                    read: &a.read,
                    read_out: &a.read_out,
                    n_classes: a.n_classes,
                }
            }
            Modality::Audio => {
                let a = self.audio.as_ref().ok_or_else(absent)?;
                AdapterParts {
                    class_embed: &a.class_embed,
                    read: &a.read,
                    read_out: &a.read_out,
                    n_classes: a.n_classes,
                }
            }
            Modality::Text => unreachable!("text sequences have no condition slot"),
        })
    }
}

/// Each condition's row: a label's own class row, `n_classes` ("no condition") for none, and
/// for the `k`-th prompt `n_classes + 1 + k`, where its reading goes after the class rows;
/// and the prompts, in order. A label outside the classes is an error.
fn condition_rows(
    conditions: &[Condition],
    n_classes: usize,
    modality: Modality,
) -> Result<(Vec<usize>, Vec<&[u32]>)> {
    let mut prompts = Vec::new();
    let rows = conditions
        .iter()
        .map(|condition| match condition {
            Condition::Label(c) if *c < n_classes => Ok(*c),
            Condition::Label(c) => Err(Error::Input(format!(
                "label {c} is outside the model's {n_classes} {modality} classes"
            ))),
            Condition::Unconditional => Ok(n_classes),
            Condition::Prompt(tokens) => {
                prompts.push(tokens.as_slice());
                Ok(n_classes + prompts.len())
            }
        })
        .collect::<Result<_>>()?;
    Ok((rows, prompts))
}

/// The conditioning modules of an image or audio adapter.
#[derive(Clone, Copy)]
struct AdapterParts<'a> {
    class_embed: &'a Embedding,
    read: &'a Embedding,
    read_out: &'a Linear,
    n_classes: usize,
}

/// `conditions`, then as many unconditional rows when `options` guide.
pub(super) fn guided(conditions: &[Condition], options: &FlowGenerateOptions) -> Vec<Condition> {
    let mut rows = conditions.to_vec();
    if options.guidance != 1.0 {
        rows.extend(std::iter::repeat_n(
            Condition::Unconditional,
            conditions.len(),
        ));
    }
    rows
}
