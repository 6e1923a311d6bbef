//! Data parallelism and gradient accumulation: one optimizer step's batch is split into
//! shards (micro-batches) that run on several devices at once, one after another, or both.
//!
//! It is built from burn's own multi-device pieces, as burn-train's multi-device strategy
//! uses them:
//! - each extra device trains a fork of the model (`Module::fork`);
//! - its gradients move to the main device (`GradientsParams::to_device`);
//! - they are summed there (`GradientsAccumulator`).
//!
//! The sum is scaled to the mean over shards, and one optimizer step follows on the main
//! device. burn's collective all-reduce (`burn::collective`) needs NCCL and is left to a
//! future CUDA-only path.
//!
//! Shard `k` of a step draws its examples and its dropout and noise from seeds of
//! `(seed, step, k)` alone. So a run is deterministic, and `n` devices take the steps of
//! `n`-fold accumulation on one device.

use std::time::Instant;

use burn::module::{ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{mix, TrainConfig, Trainable};
use crate::rng::lock_device_rng;
use crate::{Error, Result};

/// The loss and gradients of one step.
pub(crate) struct StepGrads {
    /// The mean loss over shards, or the first NaN or infinite one.
    pub loss: f32,
    /// The mean gradients, on the main device; none when a loss was not finite.
    pub grads: Option<GradientsParams>,
    /// Seconds the main device spent in forward passes (the rest of the step's time until
    /// here is backward passes, waiting for the other devices, and moving gradients).
    pub forward: f64,
}

/// The RNG seed of shard `k` of the step seeded `step_seed`; shard 0 keeps the step's seed,
/// so a run without shards draws as before shards existed.
fn shard_seed(step_seed: u64, k: usize) -> u64 {
    match k {
        0 => step_seed,
        _ => mix(step_seed, k as u64),
    }
}

/// The training loss of one shard, with its batch and its device noise drawn from `seed`.
pub(crate) fn shard_loss<M: Trainable>(
    model: &M,
    data: &M::Data,
    train: &TrainConfig,
    seed: u64,
    device: &Device,
) -> Tensor<1> {
    let mut rng = StdRng::seed_from_u64(seed);
    let _rng = lock_device_rng();
    crate::rng::seed(device, seed ^ 0x5eed); // dropout masks and noise of this shard
    model.train_loss(data, train, &mut rng, device)
}

/// The mean loss and gradients of one step's `train.batch_size` examples, split into
/// `train.grad_accum * devices.len()` shards; shard `k` runs on `devices[k % devices.len()]`.
/// `devices[0]` holds `model` and receives the gradients.
pub(crate) fn step_grads<M: Trainable>(
    model: &M,
    devices: &[Device],
    data: &M::Data,
    train: &TrainConfig,
    step_seed: u64,
) -> Result<StepGrads> {
    let shards = train.grad_accum * devices.len();
    if shards == 0 || !train.batch_size.is_multiple_of(shards) {
        return Err(Error::Config(format!(
            "batch_size {} must split evenly into grad_accum {} x {} devices",
            train.batch_size,
            train.grad_accum,
            devices.len()
        )));
    }
    let micro = TrainConfig {
        batch_size: train.batch_size / shards,
        ..train.clone()
    };
    let run_device = |d: usize, replica: M| {
        let device = &devices[d];
        let mut sum = GradientsAccumulator::<M>::new();
        let (mut losses, mut forward) = (Vec::new(), 0.0);
        for k in (d..shards).step_by(devices.len()) {
            let started = Instant::now();
            let loss = shard_loss(&replica, data, &micro, shard_seed(step_seed, k), device);
            let value = loss.clone().into_scalar::<f32>();
            forward += started.elapsed().as_secs_f64();
            losses.push(value);
            if !value.is_finite() {
                break;
            }
            sum.accumulate(
                &replica,
                GradientsParams::from_grads(loss.backward(), &replica),
            );
        }
        (losses, sum.grads(), forward)
    };
    let results: Vec<(Vec<f32>, GradientsParams, f64)> = std::thread::scope(|scope| {
        let extra: Vec<_> = (1..devices.len())
            .map(|d| {
                let replica = model.clone().fork(&devices[d]);
                scope.spawn(move || run_device(d, replica))
            })
            .collect();
        let mut results = vec![run_device(0, model.clone())];
        for handle in extra {
            results.push(
                handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            );
        }
        results
    });
    let forward = results[0].2;
    let losses: Vec<f32> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    if let Some(&bad) = losses.iter().find(|l| !l.is_finite()) {
        return Ok(StepGrads {
            loss: bad,
            grads: None,
            forward,
        });
    }
    let mut total = GradientsAccumulator::<M>::new();
    for (_, grads, _) in results {
        total.accumulate(model, grads.to_device(&devices[0], model));
    }
    let mut grads = total.grads();
    if shards > 1 {
        let factor = 1.0 / shards as f64;
        model.visit(&mut Scale {
            grads: &mut grads,
            factor,
        });
    }
    Ok(StepGrads {
        loss: losses.iter().sum::<f32>() / losses.len() as f32,
        grads: Some(grads),
        forward,
    })
}

/// `main`, then the other devices chosen for training (`--device a,b,...`), autodiff-enabled
/// like `main`.
pub(crate) fn training_devices(main: Device) -> Vec<Device> {
    let autodiff = main.is_autodiff();
    let extra = crate::device::extra_devices().into_iter();
    let extra = extra.map(|d| if autodiff { d.autodiff() } else { d });
    std::iter::once(main).chain(extra).collect()
}

/// Multiplies every gradient of the visited module by `factor`.
pub(crate) struct Scale<'a> {
    pub grads: &'a mut GradientsParams,
    pub factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g * self.factor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Session;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use rand::Rng;

    /// Linear regression on 64 fixed examples; a batch is `batch_size` of them drawn by `rng`.
    #[derive(Module, Debug)]
    struct Regression {
        linear: Linear,
    }

    impl Trainable for Regression {
        type Data = Vec<[f32; 4]>;

        fn train_loss(
            &self,
            data: &Self::Data,
            train: &TrainConfig,
            rng: &mut StdRng,
            device: &Device,
        ) -> Tensor<1> {
            let rows: Vec<f32> = (0..train.batch_size)
                .flat_map(|_| data[rng.random_range(0..data.len())])
                .collect();
            let rows = Tensor::<2>::from_data(TensorData::new(rows, [train.batch_size, 4]), device);
            let x = rows.clone().narrow(1, 0, 3);
            let y = rows.narrow(1, 3, 1);
            (self.linear.forward(x) - y).square().mean()
        }

        fn val_loss(&self, _: &Self::Data, _: &TrainConfig) -> Result<f64> {
            Ok(0.0)
        }

        fn units_per_step(train: &TrainConfig) -> usize {
            train.batch_size
        }
    }

    fn data() -> Vec<[f32; 4]> {
        (0..64)
            .map(|i| {
                let x = [i as f32 / 64.0, (i % 7) as f32 / 7.0, (i % 3) as f32];
                [x[0], x[1], x[2], 2.0 * x[0] - x[1] + 0.5 * x[2] + 0.1]
            })
            .collect()
    }

    fn train(batch_size: usize, grad_accum: usize) -> TrainConfig {
        TrainConfig {
            batch_size,
            grad_accum,
            ..TrainConfig::tiny()
        }
    }

    fn session(train: &TrainConfig, devices: usize) -> Session<Regression> {
        let device = crate::default_device().autodiff();
        let init = |d: &Device| {
            Ok(Regression {
                linear: LinearConfig::new(3, 1).init(d),
            })
        };
        let mut session = Session::fresh(train, device.clone(), init).unwrap();
        session.devices = vec![device; devices];
        session
    }

    fn grad_values(model: &Regression, grads: &GradientsParams) -> Vec<f32> {
        let weight = grads.get::<2>(model.linear.weight.id).unwrap();
        weight.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn accumulated_gradients_are_the_mean_over_shards() {
        let session = session(&train(8, 2), 1);
        let (model, data, devices) = (session.model(), data(), &session.devices);
        let got = step_grads(model, devices, &data, &train(8, 2), 42).unwrap();
        let micro = train(4, 1);
        let (mut loss, mut expected) = (0.0, vec![0.0f32; 3]);
        for k in 0..2 {
            let shard = shard_loss(model, &data, &micro, shard_seed(42, k), &devices[0]);
            loss += shard.clone().into_scalar::<f32>() / 2.0;
            let grads = GradientsParams::from_grads(shard.backward(), model);
            for (e, g) in expected.iter_mut().zip(grad_values(model, &grads)) {
                *e += g / 2.0;
            }
        }
        assert!((got.loss - loss).abs() < 1e-6, "{} vs {loss}", got.loss);
        let got = grad_values(model, &got.grads.unwrap());
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-6, "{got:?} vs {expected:?}");
        }
        let whole = step_grads(model, devices, &data, &train(8, 1), 42).unwrap();
        assert_ne!(
            grad_values(model, &whole.grads.unwrap()),
            got,
            "other examples"
        );
    }

    #[test]
    fn two_devices_train_as_two_fold_accumulation_on_one() {
        let weights = |s: &Session<Regression>| -> Vec<f32> {
            s.model()
                .linear
                .weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let mut on_two = session(&train(8, 1), 2);
        let mut accumulated = session(&train(8, 2), 1);
        let mut plain = session(&train(8, 1), 1);
        assert_eq!(
            weights(&on_two),
            weights(&accumulated),
            "same initial weights"
        );
        for _ in 0..3 {
            let (a, _) = on_two.step(&data()).unwrap();
            let (b, _) = accumulated.step(&data()).unwrap();
            plain.step(&data()).unwrap();
            assert_eq!(a, b);
        }
        assert_eq!(weights(&on_two), weights(&accumulated));
        assert_ne!(
            weights(&on_two),
            weights(&plain),
            "the shards saw other examples"
        );
    }

    #[test]
    fn a_batch_that_does_not_split_evenly_is_refused() {
        let session = session(&train(6, 2), 2);
        let err = step_grads(session.model(), &session.devices, &data(), &train(6, 2), 0);
        let err = err.err().unwrap().to_string();
        assert!(err.contains("batch_size 6 must split evenly"), "{err}");
        assert!(train(6, 4).validate().is_err());
    }
}
