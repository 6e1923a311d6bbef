//! A training run in progress ([`Session`]): weights, their moving average, the optimizer,
//! progress, and the one step / fit loop every modality trains through.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;

use super::adamw::module_optimizer;
use super::ema::Ema;
use super::polling::with_workers_polling;
use super::{
    clip_global_norm, lr_at, mix, shards, Metrics, MetricsLog, Progress, StepTimes, TrainConfig,
    Trainable,
};
use crate::card::model_card;
use crate::checkpoint::{self, Checkpoint, CheckpointConfig, TrainState};
use crate::modality::text::TextTokenizer;
use crate::rng::lock_device_rng;
use crate::{Error, Result};

/// A run in progress: weights, optimizer, progress and settings.
pub(crate) struct Session<M> {
    /// The weights under training. Taken out only during the optimizer step, so that the
    /// optimizer holds the one reference to each weight and updates it in place (a second
    /// reference made the CPU backend copy every weight before writing it).
    model: Option<M>,
    /// The moving average of `model`'s weights, in runs with `ema_decay`.
    ema: Option<Ema<M>>,
    pub optim: ModuleOptimizer,
    pub state: TrainState,
    pub train: TrainConfig,
    /// Where the model trains: the main device, which holds the weights and the optimizer,
    /// then any others that share each step's batch (see `shards.rs`).
    pub devices: Vec<Device>,
    /// Steps skipped in a row for a NaN or infinite loss or gradient.
    skipped_in_a_row: usize,
}

impl<M: Trainable> Session<M> {
    /// A fresh session: `init` builds the model on `device`, after seeding it with the run's
    /// seed; every parameter is drawn before the lock is released.
    pub fn fresh(
        train: &TrainConfig,
        device: Device,
        init: impl FnOnce(&Device) -> Result<M>,
    ) -> Result<Self> {
        let model = {
            let _rng = lock_device_rng();
            crate::rng::seed(&device, train.seed);
            let model = init(&device)?;
            model.visit(&mut InitNow); // parameters initialise lazily; draw them all now
            freeze_core_if(train, model)
        };
        Ok(Self {
            ema: train.ema_decay.map(|decay| Ema::new(&model, decay)),
            model: Some(model),
            optim: module_optimizer(train),
            state: TrainState::default(),
            train: train.clone(),
            devices: shards::training_devices(device),
            skipped_in_a_row: 0,
        })
    }

    /// A session resumed from the checkpoint in `out`, whose weights are already in `model`
    /// (in runs with `ema_decay`, the averaged weights; the trained ones are loaded here).
    pub fn resumed(
        out: &Path,
        model: M,
        train: Option<TrainConfig>,
        device: Device,
    ) -> Result<Self> {
        let train = train.ok_or_else(|| Error::Checkpoint {
            path: out.to_path_buf(),
            message: "config.json has no training section, so there is nothing to resume".into(),
        })?;
        let state = checkpoint::load_train_state(out)?;
        let (model, ema) = match train.ema_decay {
            Some(decay) => {
                let ema = Ema::new(&model, decay);
                let mut trained = model;
                checkpoint::load_weights(&mut trained, &out.join(checkpoint::TRAIN_WEIGHTS_FILE))?;
                (trained, Some(ema))
            }
            None => (model, None),
        };
        let model = freeze_core_if(&train, checkpoint::restore_param_ids(model, &state));
        let optim_path = out.join(checkpoint::OPTIMIZER_FILE);
        checkpoint::verify(&optim_path)?;
        let optim = module_optimizer(&train)
            .load(&optim_path)
            .map_err(|e| Error::Checkpoint {
                path: optim_path,
                message: format!("cannot resume without optimizer state: {e}"),
            })?;
        Ok(Self {
            model: Some(model),
            ema,
            optim,
            state,
            train,
            devices: shards::training_devices(device),
            skipped_in_a_row: 0,
        })
    }

    /// Writes this run as a resumable checkpoint in `out`, with the metrics log so far.
    pub fn save(
        &self,
        out: &Path,
        config: &CheckpointConfig,
        tokenizer: Option<&TextTokenizer>,
        metrics: &MetricsLog,
    ) -> Result<()> {
        let card = model_card(config, &self.state);
        let ckpt = Checkpoint {
            config,
            model: self.shipped(),
            train_weights: self.ema.as_ref().map(|_| self.model()),
            tokenizer,
            state: &self.state,
            optimizer: Some(&self.optim),
            card: &card,
        };
        ckpt.save_with(out, |tmp| metrics.copy_into(tmp))
    }

    /// The weights under training.
    pub fn model(&self) -> &M {
        self.model
            .as_ref()
            .expect("the weights are only out during the optimizer step")
    }

    /// The weights a checkpoint ships and generates with: the moving average, if any.
    fn shipped(&self) -> &M {
        self.ema.as_ref().map_or(self.model(), |ema| &ema.model)
    }

    fn lr(&self, step: usize) -> f64 {
        let t = &self.train;
        lr_at(step, t.steps, t.lr, t.min_lr, t.warmup_steps)
    }

    /// One optimizer step; returns its training loss and how long its phases took. On the
    /// CPU the pool's other workers poll for work through the step instead of sleeping.
    pub(super) fn step(&mut self, data: &M::Data) -> Result<(f32, StepTimes)> {
        match crate::device::is_cpu(&self.devices[0]) {
            true => with_workers_polling(|| self.step_now(data)),
            false => self.step_now(data),
        }
    }

    fn step_now(&mut self, data: &M::Data) -> Result<(f32, StepTimes)> {
        let step = self.state.step;
        let started = Instant::now();
        let step_seed = mix(self.train.seed, step as u64);
        let sharded =
            shards::step_grads(self.model(), &self.devices, data, &self.train, step_seed)?;
        let value = sharded.loss;
        let checked = match sharded.grads {
            None => Err(("loss", value)),
            Some(mut grads) => {
                let norm = clip_global_norm(self.model(), &mut grads, self.train.grad_clip);
                norm.is_finite()
                    .then_some(grads)
                    .ok_or(("gradient norm", norm))
            }
        };
        let grads = match checked {
            Ok(grads) => grads,
            Err((what, value)) => {
                if self.skipped_in_a_row == self.train.skip_nonfinite_steps {
                    return Err(Error::Diverged { step, what, value });
                }
                self.skipped_in_a_row += 1;
                tracing::warn!("step {step}: {what} is {value}; step skipped, no weight changed");
                self.state.step += 1;
                self.state.skipped_steps += 1;
                return Ok((value, StepTimes::default()));
            }
        };
        self.skipped_in_a_row = 0;
        let forward = std::time::Duration::from_secs_f64(sharded.forward);
        let backward = started.elapsed() - forward;
        let (lr, model) = (self.lr(step), self.model.take());
        let model = model.expect("the weights are in place between steps");
        let model = self.model.insert(self.optim.step(lr, model, grads));
        if let Some(ema) = &mut self.ema {
            ema.update(model, step);
        }
        let optimizer = started.elapsed() - forward - backward;
        self.state.step += 1;
        self.state.tokens_seen += M::units_per_step(&self.train) as u64;
        let times = StepTimes {
            forward: forward.as_secs_f64(),
            backward: backward.as_secs_f64(),
            optimizer: optimizer.as_secs_f64(),
        };
        Ok((value, times))
    }

    /// Validation loss (and its parts) of the weights the checkpoint ships (the average, if
    /// any).
    fn val_loss(&self, data: &M::Data) -> Result<(f64, BTreeMap<String, f64>)> {
        let _rng = lock_device_rng();
        // The same noise at every evaluation.
        crate::rng::seed(&self.devices[0], self.train.seed ^ 0xe7a1);
        self.shipped().valid().val_losses(data, &self.train)
    }

    /// Trains until `train.steps` (or until `on_progress` breaks), calling `save` with the
    /// metrics log at step 0, every `checkpoint_every` steps and at the end.
    pub fn fit(
        &mut self,
        data: &M::Data,
        out: &Path,
        save: impl Fn(&Self, &MetricsLog) -> Result<()>,
        mut on_progress: impl FnMut(&Progress) -> ControlFlow<()>,
    ) -> Result<()> {
        let metrics = MetricsLog::open(out, self.state.step)?;
        if self.state.step == 0 {
            save(self, &metrics)?; // resolved config on disk before step 0; proves `out` is writable
        }
        let started = Instant::now();
        let (first_step, seconds_before) = (self.state.step, self.state.train_seconds);
        while self.state.step < self.train.steps {
            let (loss, _) = self.step(data)?;
            let s = self.state.step;
            let units_per_s = ((s - first_step) * M::units_per_step(&self.train)) as f64
                / started.elapsed().as_secs_f64();
            let last = s == self.train.steps;
            let val = (s.is_multiple_of(self.train.eval_every) || last)
                .then(|| self.val_loss(data))
                .transpose()?;
            let (val_loss, val_parts) = val.map_or((None, BTreeMap::new()), |(v, p)| (Some(v), p));
            self.state.train_seconds = seconds_before + started.elapsed().as_secs_f64();
            self.state.val_loss = val_loss.or(self.state.val_loss);
            let lr = self.lr(s - 1);
            if loss.is_finite() {
                // a skipped step (see `skip_nonfinite_steps`) leaves no line in the log
                self.state.train_loss = Some(loss as f64);
                let tokens_seen = self.state.tokens_seen;
                metrics.append(&Metrics {
                    step: s,
                    loss,
                    lr,
                    tokens_per_s: units_per_s,
                    val_loss,
                    tokens_seen,
                    val_parts,
                })?;
            }
            let total_steps = self.train.steps;
            let flow = on_progress(&Progress {
                step: s,
                total_steps,
                loss,
                lr,
                units_per_s,
                val_loss,
            });
            if s.is_multiple_of(self.train.checkpoint_every) || last || flow.is_break() {
                save(self, &metrics)?;
            }
            if flow.is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// `model` with its core frozen if `train.freeze_core`: the core's parameters get no
/// gradients, so the optimizer never changes them (weight decay included), while gradients
/// still flow through the core to the adapters below it. The core's dropout is off too.
fn freeze_core_if<M: Module>(train: &TrainConfig, model: M) -> M {
    match train.freeze_core {
        true => model.freeze_group(ParamGroup::from_regex(r"^core\.").expect("a valid pattern")),
        false => model,
    }
}

/// Touches every parameter so lazily initialised ones are drawn immediately.
struct InitNow;

impl ModuleVisitor for InitNow {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Initializer, Linear, LinearConfig};
    use rand::rngs::StdRng;

    /// A one-layer model whose loss is NaN, or finite with a NaN gradient.
    #[derive(Module, Debug)]
    struct Probe {
        linear: Linear,
        nan_loss: bool,
    }

    impl Trainable for Probe {
        type Data = ();

        fn train_loss(
            &self,
            _: &(),
            _: &TrainConfig,
            _: &mut StdRng,
            device: &Device,
        ) -> Tensor<1> {
            let w = self.linear.forward(Tensor::<2>::ones([1, 2], device));
            if self.nan_loss {
                w.sum() * f32::NAN
            } else {
                w.square().sqrt().sum() // zero weights: loss 0, gradient 0/0
            }
        }

        fn val_loss(&self, _: &(), _: &TrainConfig) -> Result<f64> {
            Ok(0.0)
        }

        fn units_per_step(_: &TrainConfig) -> usize {
            1
        }
    }

    fn probe_session(nan_loss: bool, train: &TrainConfig) -> Session<Probe> {
        let init = |d: &Device| {
            let linear = LinearConfig::new(2, 2)
                .with_initializer(Initializer::Zeros)
                .init(d);
            Ok(Probe { linear, nan_loss })
        };
        Session::fresh(train, crate::default_device().autodiff(), init).unwrap()
    }

    fn first_step(nan_loss: bool) -> Error {
        let mut session = probe_session(nan_loss, &TrainConfig::tiny());
        let err = session.step(&()).unwrap_err();
        assert_eq!(session.state.step, 0, "a diverged step is not counted");
        err
    }

    #[test]
    fn a_nan_loss_or_gradient_stops_training() {
        assert!(matches!(
            first_step(true),
            Error::Diverged { what: "loss", .. }
        ));
        let err = first_step(false);
        assert!(matches!(
            err,
            Error::Diverged {
                what: "gradient norm",
                step: 0,
                ..
            }
        ));
        assert!(err.to_string().contains("the last checkpoint is intact"));
    }

    #[test]
    fn non_finite_steps_are_skipped_up_to_the_configured_run() {
        let train = TrainConfig {
            skip_nonfinite_steps: 2,
            ..TrainConfig::tiny()
        };
        let weights = |s: &Session<Probe>| s.model().linear.weight.val().into_data();
        for nan_loss in [true, false] {
            let mut session = probe_session(nan_loss, &train);
            let before = weights(&session);
            for step in 1..=2 {
                let (loss, _) = session.step(&()).unwrap();
                assert!(!loss.is_finite() || !nan_loss);
                assert_eq!(
                    session.state.step, step,
                    "a skipped step moves to the next batch"
                );
            }
            assert_eq!(
                weights(&session),
                before,
                "no weight changes on a skipped step"
            );
            assert_eq!(session.state.skipped_steps, 2);
            let err = session.step(&()).unwrap_err();
            assert!(matches!(err, Error::Diverged { step: 2, .. }), "{err}");
        }
    }
}
