//! A continuous decoder for patches and frames: a small MLP that models the distribution of
//! one unit (a patch's pixels, a frame's spectrum) given the core's output at that position,
//! trained with rectified flow (Liu et al. 2022; flow matching, Lipman et al. 2023) and
//! sampled with Euler steps. The per-unit head follows MAR (Li et al. 2024, "Autoregressive
//! Image Generation without Vector Quantization"); unlike a regression head it draws sharp
//! samples instead of blurry means.
//!
//! Convention: `x_t = (1 - t) x0 + t ε`, so `t = 1` is pure noise and the head predicts the
//! velocity `ε - x0`.

use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use serde::{Deserialize, Serialize};

use crate::core::{forward_linear, silu, ConditionedMlp};
use crate::{Error, Result};

/// How training draws flow times `t` in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowTime {
    /// Uniform on `[0, 1]`.
    #[default]
    Uniform,
    /// `sigmoid(N(0, 1))`: more draws at middle times, where the velocity is hardest to
    /// learn (Esser et al. 2024, "Scaling Rectified Flow Transformers").
    LogitNormal,
}

/// Shape of a [`FlowHead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowHeadConfig {
    /// Values per unit (e.g. 16 for a 4x4 grayscale patch).
    pub unit_dim: usize,
    /// Width of the core's output that conditions the head.
    pub cond_dim: usize,
    /// Hidden width of the MLP.
    pub width: usize,
    /// Residual blocks.
    pub n_blocks: usize,
}

impl FlowHeadConfig {
    /// Checks every size is positive and the width can hold sinusoidal time features.
    pub fn validate(&self) -> Result<()> {
        if self.unit_dim == 0 || self.cond_dim == 0 || self.n_blocks == 0 {
            return Err(Error::Config("flow head sizes must be positive".into()));
        }
        if self.width < 2 || !self.width.is_multiple_of(2) {
            return Err(Error::Config(format!(
                "flow head width must be even, got {}",
                self.width
            )));
        }
        Ok(())
    }

    /// Builds the head; the last layer of every block and the output start at zero, so the
    /// untrained head predicts zero velocity.
    pub fn init(&self, device: &Device) -> FlowHead {
        let w = self.width;
        let linear = |d_in, d_out, zero: bool| {
            let init = if zero {
                Initializer::Zeros
            } else {
                Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                }
            };
            LinearConfig::new(d_in, d_out)
                .with_initializer(init)
                .init(device)
        };
        FlowHead {
            input: linear(self.unit_dim, w, false),
            cond: linear(self.cond_dim, w, false),
            time_in: linear(w, w, false),
            time_out: linear(w, w, false),
            blocks: (0..self.n_blocks)
                .map(|_| FlowBlock {
                    norm: LayerNormConfig::new(w).init(device),
                    cond_bias: linear(w, w, false),
                    fc_in: linear(w, w, false),
                    fc_out: linear(w, w, true),
                })
                .collect(),
            norm_out: LayerNormConfig::new(w).init(device),
            output: linear(w, self.unit_dim, true),
            width: w,
        }
    }
}

/// The per-unit velocity network.
#[derive(Module, Debug)]
pub struct FlowHead {
    input: Linear,
    cond: Linear,
    time_in: Linear,
    time_out: Linear,
    blocks: Vec<FlowBlock>,
    norm_out: LayerNorm,
    output: Linear,
    width: usize,
}

/// `h + fc_out(silu(fc_in(norm(h)) + cond_bias(c)))`.
#[derive(Module, Debug)]
pub struct FlowBlock {
    norm: LayerNorm,
    cond_bias: Linear,
    fc_in: Linear,
    fc_out: Linear,
}

impl FlowBlock {
    /// # Shapes
    /// - `h`, `c`: `[N, width]`; returns `[N, width]`.
    fn forward(&self, h: Tensor<2>, c: &Tensor<2>) -> Tensor<2> {
        let layers = ConditionedMlp {
            norm: &self.norm,
            cond_bias: &self.cond_bias,
            fc_in: &self.fc_in,
            fc_out: &self.fc_out,
        };
        if let Some(out) = layers.forward(&h, c) {
            return out; // on the CPU: one fused node (its test compares it with these ops)
        }
        let a =
            self.fc_in.forward(self.norm.forward(h.clone())) + self.cond_bias.forward(c.clone());
        h + self.fc_out.forward(silu(a))
    }
}

impl FlowHead {
    /// Predicted velocity at noisy units `x_t` and times `t`, given conditions `z`.
    ///
    /// # Shapes
    /// - `x_t`: `[N, unit_dim]`, `t`: `[N, 1]`, `z`: `[N, cond_dim]`; returns `[N, unit_dim]`.
    pub fn forward(&self, x_t: Tensor<2>, t: Tensor<2>, z: Tensor<2>) -> Tensor<2> {
        self.velocity(x_t, self.time_embedding(t), forward_linear(&self.cond, z))
    }

    /// The velocity given the embedded time and the projected condition `cond(z)`, which
    /// callers compute once and reuse across noise draws and Euler steps.
    ///
    /// # Shapes
    /// - `x_t`: `[N, unit_dim]`, `time`: `[N, width]` or `[1, width]` (one time for all
    ///   rows), `cond_z`: `[N, width]`; returns `[N, unit_dim]`.
    fn velocity(&self, x_t: Tensor<2>, time: Tensor<2>, cond_z: Tensor<2>) -> Tensor<2> {
        let c = silu(cond_z + time); // (N, width), computed once for all blocks
        let mut h = forward_linear(&self.input, x_t);
        for block in &self.blocks {
            h = block.forward(h, &c);
        }
        forward_linear(&self.output, self.norm_out.forward(h))
    }

    /// `[N, 1]` times -> `[N, width]` embeddings.
    fn time_embedding(&self, t: Tensor<2>) -> Tensor<2> {
        let hidden = silu(forward_linear(&self.time_in, self.time_features(t)));
        forward_linear(&self.time_out, hidden)
    }

    /// Mean squared velocity error with `draws` noise/time samples per unit.
    ///
    /// # Shapes
    /// - `x0`: `[N, unit_dim]` clean units, `z`: `[N, cond_dim]`; returns `[1]`.
    pub fn loss(&self, x0: Tensor<2>, z: Tensor<2>, draws: usize, time: FlowTime) -> Tensor<1> {
        let [n, _] = x0.dims();
        let x0 = x0.repeat_dim(0, draws); // (N*K, unit_dim)
        let cond_z = forward_linear(&self.cond, z).repeat_dim(0, draws);
        let eps = crate::rng::random_like(&x0, Distribution::Normal(0.0, 1.0));
        let device = x0.device();
        let t = match time {
            FlowTime::Uniform => {
                crate::rng::random::<2>([n * draws, 1], Distribution::Uniform(0.0, 1.0), &device)
            }
            FlowTime::LogitNormal => burn::tensor::activation::sigmoid(crate::rng::random::<2>(
                [n * draws, 1],
                Distribution::Normal(0.0, 1.0),
                &device,
            )),
        };
        let x_t = x0.clone() * (t.clone().neg() + 1.0) + eps.clone() * t.clone();
        let v = self.velocity(x_t, self.time_embedding(t), cond_z);
        (v - (eps - x0)).square().mean()
    }

    /// Draws units by integrating from noise (`t = 1`) to data (`t = 0`) in `steps` Euler steps.
    /// With `guidance = Some((z_null, g))` the velocity is `v_null + g (v_cond - v_null)`
    /// (classifier-free guidance, Ho & Salimans 2022), both evaluated in one batch. The
    /// starting noise is scaled by `temperature` (1: the trained distribution; below 1: fewer,
    /// cleaner details, as MAR's sampling temperature).
    ///
    /// # Shapes
    /// - `z`, `z_null`: `[N, cond_dim]`; returns `[N, unit_dim]`.
    pub fn sample(
        &self,
        z: Tensor<2>,
        guidance: Option<(Tensor<2>, f32)>,
        steps: usize,
        unit_dim: usize,
        temperature: f32,
    ) -> Tensor<2> {
        let [n, _] = z.dims();
        let device = z.device();
        let mut x = crate::rng::random::<2>([n, unit_dim], Distribution::Normal(0.0, 1.0), &device);
        if temperature != 1.0 {
            x = x * temperature as f64;
        }
        let cond_z = forward_linear(
            &self.cond,
            match &guidance {
                Some((z_null, _)) => Tensor::cat(vec![z, z_null.clone()], 0), // (2N, cond_dim)
                None => z,
            },
        );
        let dt = 1.0 / steps as f64;
        for i in 0..steps {
            let t_now = 1.0 - i as f64 * dt;
            let time = self.time_embedding(Tensor::<2>::full([1, 1], t_now, &device));
            let x_in = if guidance.is_some() {
                Tensor::cat(vec![x.clone(), x.clone()], 0)
            } else {
                x.clone()
            };
            let v = self.velocity(x_in, time, cond_z.clone());
            let v = match &guidance {
                Some((_, g)) => {
                    let v_cond = v.clone().narrow(0, 0, n);
                    let v_null = v.narrow(0, n, n);
                    v_null.clone() + (v_cond - v_null) * (*g as f64)
                }
                None => v,
            };
            x = x - v * dt;
        }
        x
    }

    /// Sinusoidal features of `t` (as in DDPM / Transformer positions), `width` wide.
    ///
    /// # Shapes
    /// - `t`: `[N, 1]`; returns `[N, width]`.
    fn time_features(&self, t: Tensor<2>) -> Tensor<2> {
        let half = self.width / 2;
        let freqs: Vec<f32> = (0..half)
            .map(|i| (-(10_000f32.ln()) * i as f32 / half as f32).exp())
            .collect();
        let freqs =
            Tensor::<1>::from_data(TensorData::new(freqs, [half]), &t.device()).reshape([1, half]);
        let angles = t * 1000.0 * freqs; // (N, half)
        Tensor::cat(vec![angles.clone().sin(), angles.cos()], 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{AdamWConfig, GradientsParams};

    fn config() -> FlowHeadConfig {
        FlowHeadConfig {
            unit_dim: 4,
            cond_dim: 8,
            width: 32,
            n_blocks: 2,
        }
    }

    #[test]
    fn shapes_and_zero_initial_velocity() {
        let device = crate::default_device();
        let head = config().init(&device);
        let x = Tensor::<2>::random([5, 4], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<2>::full([5, 1], 0.5, &device);
        let z = Tensor::<2>::random([5, 8], Distribution::Normal(0.0, 1.0), &device);
        let v = head.forward(x, t, z.clone());
        assert_eq!(v.dims(), [5, 4]);
        assert_eq!(v.abs().max().into_scalar::<f32>(), 0.0);
        assert_eq!(
            head.sample(z.clone(), Some((z, 2.0)), 3, 4, 1.0).dims(),
            [5, 4]
        );
        assert!(FlowHeadConfig {
            width: 7,
            ..config()
        }
        .validate()
        .is_err());
    }

    /// Data at two opposite points: after training, samples land near one of the points,
    /// not at their mean (where a regression head would put them).
    #[test]
    fn learns_a_bimodal_distribution_instead_of_its_mean() {
        let device = crate::default_device().autodiff();
        crate::rng::seed(&device, 3);
        let mut head = config().init(&device);
        let mut optim = AdamWConfig::new().init();
        let mode = [1.0f32, 1.0, -1.0, -1.0];
        let z_of = |c: usize, n: usize, device: &Device| {
            let mut v = vec![0.0f32; n * 8];
            (0..n).for_each(|i| v[i * 8 + c] = 1.0);
            Tensor::<2>::from_data(TensorData::new(v, [n, 8]), device)
        };
        for step in 0..400 {
            let mut x0 = Vec::new();
            for i in 0..32 {
                let sign = if (i + step) % 2 == 0 { 1.0 } else { -1.0 };
                x0.extend(mode.iter().map(|v| v * sign));
            }
            let x0 = Tensor::<2>::from_data(TensorData::new(x0, [32, 4]), &device);
            let loss = head.loss(x0, z_of(0, 32, &device), 4, FlowTime::Uniform);
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optim.step(3e-3, head, grads);
        }
        let head = head.valid();
        let plain = crate::default_device();
        let samples: Vec<f32> = head
            .sample(z_of(0, 64, &plain), None, 20, 4, 1.0)
            .into_data()
            .try_into_vec()
            .unwrap();
        let near_a_mode = samples
            .chunks(4)
            .filter(|s| {
                let d = |sign: f32| {
                    s.iter()
                        .zip(mode)
                        .map(|(a, b)| (a - sign * b).powi(2))
                        .sum::<f32>()
                };
                d(1.0).min(d(-1.0)) < 0.5
            })
            .count();
        assert!(near_a_mode >= 48, "{near_a_mode}/64 samples near a mode");
    }
}
