//! The onset prior: where a clip starts. A class-conditional Gaussian mixture over a clip's
//! first unit and its length, fitted to the training clips; the network continues from there.
//!
//! The first unit carries the voice and the level, and the length must agree with them; the
//! rest of a clip follows its start. Drawn by the network from the class alone, the first unit
//! is the weakest link (on FSDD: Fréchet distance 136 free running, 80 from the real first
//! unit and length). A Gaussian mixture per class over the first unit's leading principal
//! components and the log length keeps voices and lengths together: one Gaussian per voice
//! where the file names give voices, else a few found by expectation-maximisation.
//!
//! ```text
//! first unit = mean + basis · z[..dims] + residual_std ⊙ ε     length = exp(z[dims] · s + m)
//! z ~ component k of the class's mixture, k from spread_picks (each component its share)
//! ```

use burn::prelude::*;
use burn::tensor::Distribution;
use nalgebra::{DMatrix, DVector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

pub use super::mixture::Mixture;
use super::mixture::{fit_mixture, principal_components, voice_mixture};
use crate::{Error, Result};

/// Shape of an onset prior; the fitted values are filled in from the data when a run starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnsetPriorConfig {
    /// Gaussian components per class when the clips do not name their voices (with voices,
    /// as in FSDD's `<label>_<voice>_<take>.wav`, each class has one component per voice).
    /// No default; the FSDD recipe and `aigc pretrain onset-prior` use 6.
    pub components: usize,
    /// Principal components of the first unit the mixture models; the rest of the first unit
    /// is independent noise with the training clips' leftover spread. No default; the FSDD
    /// recipe and `aigc pretrain onset-prior` use 32.
    pub dims: usize,
    /// The fitted prior (`None` in a recipe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted: Option<OnsetPrior>,
}

/// A fitted onset prior (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnsetPrior {
    /// Mean first unit, `[unit_dim]`.
    pub mean: Vec<f32>,
    /// Principal directions scaled by their standard deviations, `[dims, unit_dim]`.
    pub basis: Vec<f32>,
    /// Spread of what the principal directions leave out, `[unit_dim]`.
    pub residual_std: Vec<f32>,
    /// Mean and standard deviation of the natural log of the length in units.
    pub log_length: [f32; 2],
    /// The shortest and the longest training clip, in units: draws stay within them.
    pub length_range: [usize; 2],
    /// One mixture per class over `dims + 1` whitened values (the last one: the log length).
    pub classes: Vec<Mixture>,
    /// Each class's share of the training clips.
    pub class_shares: Vec<f32>,
    /// Each class's voices, one per component, when the training clips named them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voices: Vec<Vec<String>>,
}

/// One clip's start: its first unit and its length in units.
#[derive(Debug, Clone, PartialEq)]
pub struct Onset {
    /// `[unit_dim]`
    pub unit: Vec<f32>,
    /// Units in the clip, at least 1.
    pub length: usize,
}

impl OnsetPriorConfig {
    /// Checks the shape against a model's with units of `unit_dim` values, `n_classes`
    /// classes and clips of at most `max_units` units, and the fitted values, if any, against
    /// the shape: a hand-edited prior fails here, not at generation.
    pub fn validate(&self, unit_dim: usize, n_classes: usize, max_units: usize) -> Result<()> {
        self.check_shape(unit_dim)?;
        let Some(prior) = &self.fitted else {
            return Ok(());
        };
        let [shortest, longest] = prior.length_range;
        let d = self.dims + 1;
        let fits = prior.mean.len() == unit_dim
            && prior.residual_std.len() == unit_dim
            && prior.basis.len() == self.dims * unit_dim
            && prior.classes.len() == n_classes
            && prior.class_shares.len() == n_classes
            && (1 <= shortest && shortest <= longest && longest <= max_units)
            && prior.classes.iter().all(|m| {
                let k = m.weights.len();
                k > 0 && m.means.len() == k * d && m.cholesky.len() == k * d * (d + 1) / 2
            })
            && (prior.voices.is_empty()
                || prior.voices.len() == n_classes
                    && (prior.voices.iter().zip(&prior.classes))
                        .all(|(v, m)| v.len() == m.weights.len()));
        let finite = [&prior.mean, &prior.basis, &prior.residual_std]
            .into_iter()
            .flatten()
            .chain(&prior.log_length)
            .chain(&prior.class_shares)
            .chain(
                prior
                    .classes
                    .iter()
                    .flat_map(|m| m.weights.iter().chain(&m.means).chain(&m.cholesky)),
            )
            .all(|v| v.is_finite());
        match fits && finite {
            true => Ok(()),
            false => Err(Error::Config(
                "the fitted onset prior does not match its shape or holds non-finite values".into(),
            )),
        }
    }

    /// Fits the prior to the training clips' first units and lengths: principal components
    /// of all first units, then a mixture per class: one Gaussian per voice when every clip
    /// names its voice (`voices`, one per clip, or empty), else `components` Gaussians by
    /// expectation-maximisation seeded with `seed`. Every class in `0..n_classes` needs a clip.
    pub fn fit(
        &self,
        onsets: &[Onset],
        labels: &[usize],
        voices: &[Option<String>],
        n_classes: usize,
        seed: u64,
    ) -> Result<OnsetPrior> {
        let unit_dim = onsets.first().map_or(0, |o| o.unit.len());
        let n = onsets.len();
        let usable = n > 0
            && labels.len() == n
            && onsets
                .iter()
                .all(|o| o.unit.len() == unit_dim && o.length > 0);
        if !usable {
            return Err(Error::Input(format!(
                "an onset prior needs one label per clip and clips of at least one unit, all \
                 units of one size; got {n} clips and {} labels",
                labels.len()
            )));
        }
        self.check_shape(unit_dim)?;
        let x = DMatrix::from_fn(n, unit_dim, |i, j| onsets[i].unit[j] as f64);
        let (mean, basis, whitened) = principal_components(&x, self.dims);
        let centered = DMatrix::from_fn(n, unit_dim, |i, j| x[(i, j)] - mean[j]);
        let residual = &centered - &whitened * &basis;
        let residual_std = (0..unit_dim)
            .map(|j| (residual.column(j).norm_squared() / n as f64).sqrt() as f32)
            .collect();
        let log_lengths: Vec<f64> = onsets.iter().map(|o| (o.length as f64).ln()).collect();
        let log_mean = log_lengths.iter().sum::<f64>() / n as f64;
        let log_std = (log_lengths
            .iter()
            .map(|l| (l - log_mean).powi(2))
            .sum::<f64>()
            / n as f64)
            .sqrt()
            .max(1e-3);
        let row = |i: usize| {
            let mut z = whitened.row(i).transpose().insert_row(self.dims, 0.0);
            z[self.dims] = (log_lengths[i] - log_mean) / log_std;
            z
        };
        let rows: Vec<DVector<f64>> = (0..n).map(row).collect();
        let (classes, class_voices) = self.fit_classes(&rows, labels, voices, n_classes, seed)?;
        Ok(OnsetPrior {
            mean: mean.iter().map(|&v| v as f32).collect(),
            basis: basis.transpose().iter().map(|&v| v as f32).collect(),
            residual_std,
            log_length: [log_mean as f32, log_std as f32],
            length_range: [
                onsets.iter().map(|o| o.length).min().unwrap_or(1),
                onsets.iter().map(|o| o.length).max().unwrap_or(1),
            ],
            class_shares: (0..n_classes)
                .map(|c| labels.iter().filter(|&&l| l == c).count() as f32 / n as f32)
                .collect(),
            classes,
            voices: class_voices,
        })
    }
}

impl OnsetPriorConfig {
    /// One mixture per class over the clips' `rows` (whitened first unit and log length):
    /// a Gaussian per voice when every clip names its voice, else `components` by
    /// expectation-maximisation seeded with `seed`; with each class's voices (empty without).
    fn fit_classes(
        &self,
        rows: &[DVector<f64>],
        labels: &[usize],
        voices: &[Option<String>],
        n_classes: usize,
        seed: u64,
    ) -> Result<(Vec<Mixture>, Vec<Vec<String>>)> {
        let voiced = voices.len() == rows.len() && voices.iter().all(Option::is_some);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut classes = Vec::with_capacity(n_classes);
        let mut class_voices = Vec::new();
        for class in 0..n_classes {
            let members: Vec<usize> = (0..rows.len()).filter(|&i| labels[i] == class).collect();
            if members.is_empty() {
                return Err(Error::Input(format!(
                    "class {class} has no training clips to fit the onset prior to"
                )));
            }
            if voiced {
                let mut names: Vec<&String> = members.iter().flat_map(|&i| &voices[i]).collect();
                names.sort();
                names.dedup();
                let groups: Vec<Vec<DVector<f64>>> = names
                    .iter()
                    .map(|&name| {
                        let of_voice = members
                            .iter()
                            .filter(|&&i| voices[i].as_ref() == Some(name));
                        of_voice.map(|&i| rows[i].clone()).collect()
                    })
                    .collect();
                classes.push(voice_mixture(&groups));
                class_voices.push(names.into_iter().cloned().collect());
            } else {
                let of_class: Vec<DVector<f64>> =
                    members.iter().map(|&i| rows[i].clone()).collect();
                classes.push(fit_mixture(&of_class, self.components, &mut rng));
            }
        }
        Ok((classes, class_voices))
    }

    fn check_shape(&self, unit_dim: usize) -> Result<()> {
        match self.components == 0 || self.dims == 0 || self.dims > unit_dim {
            true => Err(Error::Config(format!(
                "the onset prior needs components >= 1 and 1 <= dims <= {unit_dim} (the unit size)"
            ))),
            false => Ok(()),
        }
    }
}

impl OnsetPrior {
    /// Values of noise one draw reads: a uniform number (which class, for unconditional
    /// draws), then standard normal ones (`dims + 1` for the mixture, `unit_dim` for the
    /// leftover spread).
    pub fn noise_per_draw(&self) -> usize {
        1 + self.dims() + 1 + self.mean.len()
    }

    fn dims(&self) -> usize {
        self.basis.len() / self.mean.len()
    }

    /// One clip's start from `noise` (see [`OnsetPrior::noise_per_draw`]): for class `label`
    /// (beyond the classes: unconditional, a class drawn in proportion to the training
    /// clips), from the component where `pick` (in `[0, 1)`) falls among the class's
    /// cumulative weights (see [`spread_picks`]); the length within the training clips' (which
    /// [`OnsetPriorConfig::validate`] checks against the model's longest).
    pub fn draw(&self, label: usize, pick: f32, noise: &[f32]) -> Onset {
        let (dims, unit_dim) = (self.dims(), self.mean.len());
        let d = dims + 1;
        let class = match label < self.classes.len() {
            true => label,
            false => at_share(&self.class_shares, noise[0]),
        };
        let mixture = &self.classes[class];
        let k = at_share(&mixture.weights, pick);
        let normal = &noise[1..1 + d];
        let factor = &mixture.cholesky[k * d * (d + 1) / 2..];
        let z: Vec<f32> = (0..d)
            .map(|r| {
                let row = &factor[r * (r + 1) / 2..r * (r + 1) / 2 + r + 1];
                mixture.means[k * d + r] + row.iter().zip(normal).map(|(a, b)| a * b).sum::<f32>()
            })
            .collect();
        let leftover = &noise[1 + d..1 + d + unit_dim];
        let unit = (0..unit_dim)
            .map(|j| {
                let spread: f32 = (0..dims).map(|r| z[r] * self.basis[r * unit_dim + j]).sum();
                self.mean[j] + spread + self.residual_std[j] * leftover[j]
            })
            .collect();
        let [log_mean, log_std] = self.log_length;
        let length = (z[dims] * log_std + log_mean).exp().round() as usize;
        let [shortest, longest] = self.length_range;
        Onset {
            unit,
            length: length.clamp(shortest, longest),
        }
    }

    /// [`OnsetPrior::draw`] for each of `labels` with its pick, the noise drawn from
    /// `device`'s generator.
    pub fn draw_batch(&self, labels: &[usize], picks: &[f32], device: &Device) -> Vec<Onset> {
        let b = labels.len();
        let which_class = crate::rng::random::<2>([b, 1], Distribution::Uniform(0.0, 1.0), device);
        let normal = crate::rng::random::<2>(
            [b, self.noise_per_draw() - 1],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        let noise: Vec<f32> = Tensor::cat(vec![which_class, normal], 1)
            .into_data()
            .try_into_vec()
            .expect("f32 noise");
        labels
            .iter()
            .zip(picks)
            .zip(noise.chunks_exact(self.noise_per_draw()))
            .map(|((&label, &pick), noise)| self.draw(label, pick, noise))
            .collect()
    }
}

/// The index where `u` (in `[0, 1)`) falls among the cumulative `shares`.
fn at_share(shares: &[f32], u: f32) -> usize {
    let mut left = u;
    (0..shares.len())
        .find(|&k| {
            left -= shares[k];
            left < 0.0
        })
        .unwrap_or(shares.len() - 1)
}

/// Where each clip of a request falls among its class's components (see
/// [`OnsetPrior::draw`]): the `n` clips of a class take `(i + start) / n` for `i = 0..n`, from
/// a start drawn per class with `seed` (systematic sampling). Each component (a voice, with
/// named voices) then gets its share of the class's clips to within one clip, where drawing
/// each at random would leave some voices out of a request and double others.
pub fn spread_picks(labels: &[usize], seed: u64) -> Vec<f32> {
    // Per label: clips in the request, clips placed so far, start.
    let mut groups = std::collections::BTreeMap::new();
    for &label in labels {
        groups.entry(label).or_insert((0usize, 0usize, 0.0f32)).0 += 1;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    for group in groups.values_mut() {
        group.2 = rng.random();
    }
    labels
        .iter()
        .map(|label| {
            let (count, placed, start) = groups.get_mut(label).expect("every label counted");
            *placed += 1;
            (*placed as f32 - 1.0 + *start) / *count as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Class 0 has two voices (first unit near +1 with 2 units, near -1 with 6, one clip in
    /// three the latter); class 1 one voice (near 0.5, 4 units).
    fn voices() -> (Vec<Onset>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(3);
        let mut onsets = Vec::new();
        let mut labels = Vec::new();
        for i in 0..400 {
            let (level, length, label) = match i % 4 {
                0 => (-1.0, 6, 0),
                1 | 2 => (1.0, 2, 0),
                _ => (0.5, 4, 1),
            };
            let unit = (0..8)
                .map(|_| level + 0.05 * (rng.random::<f32>() - 0.5))
                .collect();
            onsets.push(Onset { unit, length });
            labels.push(label);
        }
        (onsets, labels)
    }

    fn config() -> OnsetPriorConfig {
        OnsetPriorConfig {
            components: 2,
            dims: 2,
            fitted: None,
        }
    }

    fn draws(prior: &OnsetPrior, label: usize, count: usize) -> Vec<Onset> {
        let mut rng = StdRng::seed_from_u64(9);
        (0..count)
            .map(|_| {
                let mut noise = vec![rng.random::<f32>()];
                noise.extend((1..prior.noise_per_draw()).map(|_| {
                    // Box-Muller
                    let (a, b) = (rng.random::<f32>().max(1e-9), rng.random::<f32>());
                    (-2.0 * a.ln()).sqrt() * (std::f32::consts::TAU * b).cos()
                }));
                prior.draw(label, rng.random(), &noise)
            })
            .collect()
    }

    #[test]
    fn draws_keep_each_voice_with_its_length_in_its_share() {
        let (onsets, labels) = voices();
        // Unnamed voices: two components found by expectation-maximisation.
        keeps_voices_apart(&config().fit(&onsets, &labels, &[], 2, 1).unwrap());
        // Named voices: one component each, whatever `components` says.
        let names: Vec<Option<String>> = onsets
            .iter()
            .map(|o| match o.unit[0] {
                v if v < 0.0 => Some("low".into()),
                v if v < 0.75 => Some("mid".into()),
                _ => Some("high".into()),
            })
            .collect();
        let one = OnsetPriorConfig {
            components: 1,
            ..config()
        };
        let prior = one.fit(&onsets, &labels, &names, 2, 1).unwrap();
        assert_eq!(prior.voices, [vec!["high", "low"], vec!["mid"]]);
        keeps_voices_apart(&prior);
    }

    fn keeps_voices_apart(prior: &OnsetPrior) {
        let level = |o: &Onset| o.unit.iter().sum::<f32>() / o.unit.len() as f32;
        let class0 = draws(prior, 0, 300);
        let paired = class0
            .iter()
            .filter(|o| (level(o) > 0.7 && o.length <= 3) || (level(o) < -0.7 && o.length >= 5))
            .count();
        let long = class0.iter().filter(|o| o.length >= 5).count();
        let within = class0.iter().all(|o| (2..=6).contains(&o.length));
        assert!(
            within,
            "draws keep to the training clips' lengths, 2 to 6 units"
        );
        assert!(
            paired >= 290,
            "{paired}/300 draws keep voice and length together"
        );
        assert!(
            (70..=130).contains(&long),
            "{long}/300 long draws, trained 1 in 3"
        );
        let class1 = draws(prior, 1, 100);
        assert!(
            class1
                .iter()
                .all(|o| (3..=5).contains(&o.length) && (level(o) - 0.5).abs() < 0.3),
            "class 1 draws its own voice"
        );
    }

    #[test]
    fn spread_picks_give_each_voice_its_share_of_a_request() {
        let labels: Vec<usize> = [vec![0; 30], vec![1; 4], vec![0; 6]].concat();
        let picks = spread_picks(&labels, 7);
        assert_eq!(picks, spread_picks(&labels, 7), "seeded");
        assert_ne!(picks, spread_picks(&labels, 8));
        assert!(picks.iter().all(|p| (0.0..1.0).contains(p)));
        let six = [1.0 / 6.0; 6];
        let mut heard = [0; 6];
        for (label, pick) in labels.iter().zip(&picks) {
            if *label == 0 {
                heard[at_share(&six, *pick)] += 1;
            }
        }
        assert_eq!(heard, [6; 6], "36 clips of class 0, 6 per voice");
        let uneven = [0.25, 0.75];
        let shares: Vec<usize> = picks[30..34]
            .iter()
            .map(|&p| at_share(&uneven, p))
            .collect();
        assert_eq!(shares.iter().filter(|&&k| k == 0).count(), 1, "{shares:?}");
    }

    #[test]
    fn bad_shapes_and_missing_classes_are_errors() {
        let (onsets, labels) = voices();
        let err = config()
            .fit(&onsets, &labels, &[], 3, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("class 2 has no training clips"), "{err}");
        let wide = OnsetPriorConfig {
            dims: 9,
            ..config()
        };
        assert!(wide.validate(8, 2, 63).is_err());
        let err = config().fit(&onsets, &labels[1..], &[], 2, 1).unwrap_err();
        assert!(err.to_string().contains("one label per clip"), "{err}");
        let mut fitted = OnsetPriorConfig {
            fitted: Some(config().fit(&onsets, &labels, &[], 2, 1).unwrap()),
            ..config()
        };
        assert!(fitted.validate(8, 2, 63).is_ok());
        assert!(
            fitted.validate(8, 2, 5).is_err(),
            "clips of 6 units from a model of 5"
        );
        fitted.fitted.as_mut().unwrap().classes[1].means[0] = f32::NAN;
        assert!(fitted.validate(8, 2, 63).is_err());
    }
}
