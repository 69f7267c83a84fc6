"""Fréchet distance between two Gaussians (FID / FRD core)."""

from __future__ import annotations

import numpy as np

from .gaussian_stats import FeatureStats

GaussianLike = FeatureStats | tuple[np.ndarray, np.ndarray]


def _mean_cov(stats: GaussianLike) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(stats, FeatureStats):
        mean, cov = stats.mean, stats.cov
    else:
        mean, cov = stats
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    cov = np.atleast_2d(np.asarray(cov, dtype=np.float64))
    if cov.shape != (mean.shape[0], mean.shape[0]):
        raise ValueError(f"cov shape {cov.shape} does not match mean shape {mean.shape}")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        raise ValueError("mean and covariance must be finite")
    return mean, (cov + cov.T) / 2


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a (numerically) PSD matrix; negative eigenvalues clipped."""
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """Tr sqrt(Ca Cb), via the eigenvalues of the symmetric PSD matrix sqrt(Ca) Cb sqrt(Ca).

    Ca Cb is similar to sqrt(Ca) Cb sqrt(Ca), so both share eigenvalues; the symmetric form
    stays real and stable for singular (rank-deficient) covariances, needing no eps * I.
    """
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    values = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(values, 0, None)).sum())


def frechet_distance(a: GaussianLike, b: GaussianLike) -> float:
    """||mu_a - mu_b||^2 + Tr(Ca + Cb - 2 sqrt(Ca Cb)) for stats or (mean, cov) pairs; >= 0."""
    mean_a, cov_a = _mean_cov(a)
    mean_b, cov_b = _mean_cov(b)
    if mean_a.shape != mean_b.shape:
        raise ValueError(f"dimension mismatch: {mean_a.shape} vs {mean_b.shape}")
    diff = mean_a - mean_b
    value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b)
                  - 2.0 * trace_sqrt_product(cov_a, cov_b))
    if not np.isfinite(value):
        raise ValueError("Fréchet distance is not finite")
    return max(value, 0.0)
