//! Gaussian mixtures for the onset prior ([`super::prior`]): the leading principal components
//! of a set of rows, and a mixture fitted to rows by expectation-maximisation (started from
//! k-means++ seeds) or given as one Gaussian per group of rows. Fitting runs in `f64` on
//! `nalgebra`; a fitted mixture is stored in `f32` with packed Cholesky factors.

use nalgebra::{Cholesky, DMatrix, DVector, RowDVector, SymmetricEigen};
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Expectation-maximisation rounds of a class's mixture.
const EM_ROUNDS: usize = 100;
/// Added to each component's covariance (in whitened units), so none collapses onto a point.
const COVARIANCE_FLOOR: f64 = 1e-2;

/// A Gaussian mixture over `d` values, with `k` components.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mixture {
    /// Component weights, summing to 1.
    pub weights: Vec<f32>,
    /// Component means, `[k, d]`.
    pub means: Vec<f32>,
    /// Lower-triangular Cholesky factors of the component covariances, row by row, packed:
    /// `[k, d (d + 1) / 2]`.
    pub cholesky: Vec<f32>,
}

/// The `dims` leading principal components of the rows of `x` (`[n, width]`): the mean row,
/// the basis (`[dims, width]`: directions scaled by their spreads) and each row's whitened
/// coordinates (`[n, dims]`), so that `mean + whitened * basis` approximates `x`.
pub(super) fn principal_components(
    x: &DMatrix<f64>,
    dims: usize,
) -> (RowDVector<f64>, DMatrix<f64>, DMatrix<f64>) {
    let (n, width) = x.shape();
    let mean = x.row_mean();
    let centered = DMatrix::from_fn(n, width, |i, j| x[(i, j)] - mean[j]);
    let eigen = SymmetricEigen::new(centered.transpose() * &centered / n as f64);
    let mut order: Vec<usize> = (0..width).collect();
    order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
    let spread = |r: usize| eigen.eigenvalues[order[r]].max(1e-12).sqrt();
    let basis = DMatrix::from_fn(dims, width, |r, j| {
        eigen.eigenvectors[(j, order[r])] * spread(r)
    });
    let whitened = DMatrix::from_fn(n, dims, |i, r| {
        centered
            .row(i)
            .transpose()
            .dot(&eigen.eigenvectors.column(order[r]))
            / spread(r)
    });
    (mean, basis, whitened)
}

/// A `components`-Gaussian mixture fitted to `rows` by expectation-maximisation, started
/// from k-means++ seeds.
pub(super) fn fit_mixture(rows: &[DVector<f64>], components: usize, rng: &mut StdRng) -> Mixture {
    let (n, d) = (rows.len(), rows[0].len());
    let mut means = vec![rows[rng.random_range(0..n)].clone()];
    while means.len() < components {
        let far: Vec<f64> = rows
            .iter()
            .map(|x| {
                means
                    .iter()
                    .map(|m| (x - m).norm_squared())
                    .fold(f64::MAX, f64::min)
            })
            .collect();
        let mut pick = rng.random::<f64>() * far.iter().sum::<f64>();
        let i = (0..n)
            .find(|&i| {
                pick -= far[i];
                pick < 0.0
            })
            .unwrap_or(n - 1);
        means.push(rows[i].clone());
    }
    let mut covs = vec![DMatrix::identity(d, d); components];
    let mut weights = vec![1.0 / components as f64; components];
    for _ in 0..EM_ROUNDS {
        // E step: each row's responsibilities, from log densities.
        let factors: Vec<Cholesky<f64, _>> = covs
            .iter()
            .map(|c| Cholesky::new(c.clone()).expect("floored covariances are positive definite"))
            .collect();
        let resp: Vec<Vec<f64>> = rows
            .iter()
            .map(|x| {
                let log_p: Vec<f64> = (0..components)
                    .map(|k| {
                        let l = factors[k].l();
                        let y = l
                            .solve_lower_triangular(&(x - &means[k]))
                            .expect("invertible");
                        let log_det: f64 = l.diagonal().iter().map(|v| v.ln()).sum();
                        weights[k].ln() - 0.5 * y.norm_squared() - log_det
                    })
                    .collect();
                let top = log_p.iter().copied().fold(f64::MIN, f64::max);
                let p: Vec<f64> = log_p.iter().map(|v| (v - top).exp()).collect();
                let total: f64 = p.iter().sum();
                p.iter().map(|v| v / total).collect()
            })
            .collect();
        // M step.
        for k in 0..components {
            let resp_k: Vec<f64> = resp.iter().map(|r| r[k]).collect();
            weights[k] = resp_k.iter().sum::<f64>() / n as f64;
            (means[k], covs[k]) = weighted_gaussian(rows, &resp_k);
        }
    }
    packed(&weights, &means, covs)
}

/// One Gaussian per group of rows (a voice's clips), weighted by the group's size.
pub(super) fn voice_mixture(groups: &[Vec<DVector<f64>>]) -> Mixture {
    let total: usize = groups.iter().map(Vec::len).sum();
    let weights: Vec<f64> = groups
        .iter()
        .map(|g| g.len() as f64 / total as f64)
        .collect();
    let (means, covs) = groups
        .iter()
        .map(|g| weighted_gaussian(g, &vec![1.0; g.len()]))
        .unzip::<_, _, Vec<_>, Vec<_>>();
    packed(&weights, &means, covs)
}

/// Mean and floored covariance of `rows` weighted by `weights`.
fn weighted_gaussian(rows: &[DVector<f64>], weights: &[f64]) -> (DVector<f64>, DMatrix<f64>) {
    let d = rows[0].len();
    let mass = weights.iter().sum::<f64>() + 1e-9;
    let mean = rows
        .iter()
        .zip(weights)
        .fold(DVector::zeros(d), |acc, (x, w)| acc + x * *w)
        / mass;
    let cov = rows
        .iter()
        .zip(weights)
        .fold(DMatrix::zeros(d, d), |acc, (x, w)| {
            let dx = x - &mean;
            acc + &dx * dx.transpose() * *w
        })
        / mass
        + DMatrix::identity(d, d) * COVARIANCE_FLOOR;
    (mean, cov)
}

/// A mixture as stored: `f32`, covariances as packed Cholesky factors.
fn packed(weights: &[f64], means: &[DVector<f64>], covs: Vec<DMatrix<f64>>) -> Mixture {
    let mut cholesky = Vec::new();
    for cov in covs {
        let l = Cholesky::new(cov)
            .expect("floored covariances are positive definite")
            .l();
        for r in 0..l.nrows() {
            cholesky.extend((0..=r).map(|c| l[(r, c)] as f32));
        }
    }
    Mixture {
        weights: weights.iter().map(|&w| w as f32).collect(),
        means: means
            .iter()
            .flat_map(|m| m.iter().map(|&v| v as f32))
            .collect(),
        cholesky,
    }
}
