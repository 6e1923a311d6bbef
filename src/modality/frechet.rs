//! The Fréchet distance between two sets of feature vectors, each summarised by a Gaussian
//! (Heusel et al. 2017, the "FID" when the features come from Inception; here from the
//! project's own classifiers):
//!
//! `d² = |μ₁ - μ₂|² + Tr(Σ₁ + Σ₂ - 2 (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2})`

use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::{Error, Result};

/// Mean and covariance of a set of feature vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian {
    mean: DVector<f64>,
    cov: DMatrix<f64>,
}

impl Gaussian {
    /// Fits `features` (`n` rows of `dim` values, row-major); needs at least two rows.
    pub fn fit(features: &[f32], dim: usize) -> Result<Self> {
        let n = features.len() / dim.max(1);
        if dim == 0 || n < 2 || features.len() != n * dim {
            return Err(Error::Input(format!(
                "need at least 2 feature rows of width {dim}, got {} values",
                features.len()
            )));
        }
        let x = DMatrix::from_row_iterator(n, dim, features.iter().map(|&v| v as f64));
        let mean = x.row_mean().transpose();
        let centered = DMatrix::from_fn(n, dim, |i, j| x[(i, j)] - mean[j]);
        let cov = centered.transpose() * &centered / (n - 1) as f64;
        Ok(Self { mean, cov })
    }

    /// The part of [`Gaussian::frechet_distance`] from the means alone, `|mu_a - mu_b|^2`:
    /// a shift every sample shares (an artifact), as opposed to a difference in spread.
    pub fn mean_distance(&self, other: &Gaussian) -> f64 {
        (&self.mean - &other.mean).norm_squared()
    }

    /// The total variance, `trace(cov)`: how varied the samples are.
    pub fn total_variance(&self) -> f64 {
        self.cov.trace()
    }

    /// The Fréchet distance (squared, as FID reports it) to `other`.
    pub fn frechet_distance(&self, other: &Gaussian) -> f64 {
        let diff = &self.mean - &other.mean;
        let sqrt_a = psd_sqrt(&self.cov);
        let middle = &sqrt_a * &other.cov * &sqrt_a;
        let cross: f64 = SymmetricEigen::new(symmetrise(middle))
            .eigenvalues
            .iter()
            .map(|&e| e.max(0.0).sqrt())
            .sum();
        diff.norm_squared() + self.cov.trace() + other.cov.trace() - 2.0 * cross
    }
}

/// Square root of a symmetric positive semi-definite matrix (negative rounding noise clipped).
fn psd_sqrt(m: &DMatrix<f64>) -> DMatrix<f64> {
    let eig = SymmetricEigen::new(symmetrise(m.clone()));
    let roots = eig.eigenvalues.map(|e| e.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&roots) * eig.eigenvectors.transpose()
}

fn symmetrise(m: DMatrix<f64>) -> DMatrix<f64> {
    (&m + m.transpose()) * 0.5
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(mean: &[f64], cov: &[f64]) -> Gaussian {
        let d = mean.len();
        Gaussian {
            mean: DVector::from_row_slice(mean),
            cov: DMatrix::from_row_slice(d, d, cov),
        }
    }

    #[test]
    fn matches_the_closed_form() {
        // Diagonal covariances: d² = |Δμ|² + Σ (√a - √b)².
        let a = gaussian(&[0.0, 1.0], &[4.0, 0.0, 0.0, 9.0]);
        let b = gaussian(&[3.0, 1.0], &[1.0, 0.0, 0.0, 1.0]);
        let expected = 9.0 + (2.0f64 - 1.0).powi(2) + (3.0f64 - 1.0).powi(2);
        assert!((a.frechet_distance(&b) - expected).abs() < 1e-9);
        assert!(a.frechet_distance(&a).abs() < 1e-9);
        // Correlated covariances: symmetric in its arguments.
        let c = gaussian(&[1.0, 0.0], &[2.0, 0.8, 0.8, 1.0]);
        assert!((a.frechet_distance(&c) - c.frechet_distance(&a)).abs() < 1e-9);
        // Its parts: the means alone, and each side's spread.
        assert_eq!(a.mean_distance(&b), 9.0);
        assert_eq!((a.total_variance(), b.total_variance()), (13.0, 2.0));
    }

    #[test]
    fn fits_mean_and_unbiased_covariance() {
        let g = Gaussian::fit(&[1.0, 2.0, 3.0, 6.0], 2).unwrap();
        assert_eq!(g.mean.as_slice(), &[2.0, 4.0]);
        assert_eq!(g.cov.as_slice(), &[2.0, 4.0, 4.0, 8.0]);
        assert!(Gaussian::fit(&[1.0, 2.0], 2).is_err());
    }
}
