//! aigc's twin of the CPU backend's random generator (`aigc::rng`) against the backend itself:
//! the same values, bit for bit, from the same seed. Its own test binary, with one test, so
//! no other test draws from the backend's process-wide generator between seeding and drawing.

use aigc::rng::{random, seed};
use burn::prelude::*;
use burn::tensor::Distribution;

/// Draws in this order: an odd count of Uniform values first, so the masks after them start
/// at an odd word of the stream, then masks spanning several parallel chunks, and the rest.
const DRAWS: [([usize; 2], Distribution); 7] = [
    ([1, 7], Distribution::Uniform(-1.0, 2.0)),
    ([3, 50_000], Distribution::Bernoulli(0.9)),
    ([2, 40_001], Distribution::Bernoulli(1.0)),
    ([4, 999], Distribution::Normal(0.0, 1.0)),
    ([1, 3], Distribution::Default),
    ([2, 70_000], Distribution::Bernoulli(0.5)),
    ([1, 5], Distribution::Bernoulli(0.3)),
];

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec().unwrap()
}

#[test]
fn the_twin_draws_what_the_cpu_backend_draws() {
    let device = Device::flex();
    device.seed(11); // the backend alone
    let backend: Vec<Vec<f32>> = DRAWS
        .iter()
        .map(|&(shape, d)| values(Tensor::random(shape, d, &device)))
        .collect();
    seed(&device, 11);
    for (i, &(shape, distribution)) in DRAWS.iter().enumerate() {
        let twin = values(random::<2>(shape, distribution, &device));
        assert!(twin == backend[i], "draw {i}: {distribution:?} {shape:?}");
    }
    // On the autodiff device too (the tensors training draws).
    seed(&device, 11);
    let twin = random::<2>(DRAWS[0].0, DRAWS[0].1, &device.clone().autodiff());
    assert_eq!(values(twin), backend[0], "autodiff device");
}
