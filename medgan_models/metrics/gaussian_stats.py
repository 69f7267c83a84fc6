"""Gaussian feature statistics (count, mean, covariance): compute, pool exactly, release with DP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .dp_gaussian import analytic_gaussian_sigma


@dataclass(eq=False)
class FeatureStats:
    """Count, mean (D,) and unbiased sample covariance (D, D; ddof=1) of N feature vectors."""

    count: int
    mean: np.ndarray
    cov: np.ndarray

    def __post_init__(self) -> None:
        self.count = int(self.count)
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        dim = self.mean.shape[0]
        self.cov = np.asarray(self.cov, dtype=np.float64)
        if self.cov.shape != (dim, dim):
            raise ValueError(f"cov has shape {self.cov.shape}, expected {(dim, dim)}")
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        return int(self.mean.shape[0])

    def to_sums(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(count, sum of x (D,), sum of x x^T (D, D)): the additive form of these stats."""
        n = self.count
        total = n * self.mean
        outer = max(n - 1, 0) * self.cov + n * np.outer(self.mean, self.mean)
        return n, total, outer

    @classmethod
    def from_sums(cls, count: int, total: np.ndarray, sum_outer: np.ndarray) -> FeatureStats:
        """Stats from (count, sum, sum of outer products); cov is zero when count < 2."""
        total = np.asarray(total, dtype=np.float64)
        sum_outer = np.asarray(sum_outer, dtype=np.float64)
        if count <= 0:
            raise ValueError("from_sums needs count >= 1")
        mean = total / count
        if count < 2:
            return cls(count, mean, np.zeros_like(sum_outer))
        cov = (sum_outer - count * np.outer(mean, mean)) / (count - 1)
        return cls(count, mean, (cov + cov.T) / 2)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python (int / nested lists of floats) for messages and JSON."""
        return {"count": self.count, "mean": self.mean.tolist(), "cov": self.cov.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureStats:
        """Inverse of :meth:`to_dict`."""
        return cls(int(data["count"]), np.asarray(data["mean"]), np.asarray(data["cov"]))


def feature_stats(features: np.ndarray) -> FeatureStats:
    """Count, mean and unbiased covariance of (N, D) features (cov = 0 when N == 1)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"features must be a non-empty (N, D) array, got shape {x.shape}")
    mean = x.mean(axis=0)
    if x.shape[0] < 2:
        return FeatureStats(1, mean, np.zeros((x.shape[1], x.shape[1])))
    centred = x - mean
    cov = centred.T @ centred / (x.shape[0] - 1)
    return FeatureStats(x.shape[0], mean, cov)


def pool_stats(parts: list[FeatureStats]) -> FeatureStats:
    """Exact stats of the concatenated data behind ``parts`` (within + between scatter)."""
    parts = [p for p in parts if p.count > 0]
    if not parts:
        raise ValueError("pool_stats needs at least one non-empty part")
    dims = {p.dim for p in parts}
    if len(dims) != 1:
        raise ValueError(f"parts have different feature dimensions: {sorted(dims)}")
    count = sum(p.count for p in parts)
    mean = sum(p.count * p.mean for p in parts) / count
    if count < 2:
        return FeatureStats(count, mean, np.zeros_like(parts[0].cov))
    scatter = np.zeros_like(parts[0].cov)
    for p in parts:
        shift = p.mean - mean
        scatter += max(p.count - 1, 0) * p.cov + p.count * np.outer(shift, shift)
    cov = scatter / (count - 1)
    return FeatureStats(count, mean, (cov + cov.T) / 2)


def clip_rows(features: np.ndarray, clip_norm: float) -> np.ndarray:
    """Each row scaled down (never up) to L2 norm at most ``clip_norm``."""
    x = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    scale = np.minimum(1.0, clip_norm / np.maximum(norms, 1e-12))
    return x * scale


def nearest_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric part of ``matrix`` with negative eigenvalues clipped to 0."""
    sym = (matrix + matrix.T) / 2
    values, vectors = np.linalg.eigh(sym)
    psd = (vectors * np.clip(values, 0, None)) @ vectors.T
    return (psd + psd.T) / 2


def noisy_stats(features: np.ndarray, epsilon: float, delta: float, clip_norm: float,
                rng: np.random.Generator) -> tuple[FeatureStats, dict[str, float]]:
    """Release a site's feature stats with the Gaussian mechanism.

    Each row is clipped to L2 norm ``clip_norm``; then the sum (L2 sensitivity clip_norm) and
    the sum of outer products (Frobenius sensitivity clip_norm**2) get Gaussian noise calibrated
    by the analytic Gaussian mechanism (Balle & Wang 2018), each with (epsilon/2, delta/2), so
    the pair is (epsilon, delta)-DP by basic composition under add/remove-one adjacency.
    The count is released exactly: it is NOT protected (treat the site size as public).
    The covariance is post-processed to symmetric PSD by eigenvalue clipping.
    """
    if clip_norm <= 0:
        raise ValueError(f"clip_norm must be positive, got {clip_norm}")
    if not (epsilon > 0 and 0 < delta < 1):
        raise ValueError(f"need epsilon > 0 and 0 < delta < 1, got {epsilon}, {delta}")
    x = clip_rows(features, clip_norm)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"noisy_stats needs (N >= 2, D) features, got shape {x.shape}")
    n, dim = x.shape
    sigma_sum = analytic_gaussian_sigma(epsilon / 2, delta / 2, clip_norm)
    sigma_outer = analytic_gaussian_sigma(epsilon / 2, delta / 2, clip_norm ** 2)
    noisy_sum = x.sum(axis=0) + rng.normal(0.0, sigma_sum, size=dim)
    noisy_outer = x.T @ x + rng.normal(0.0, sigma_outer, size=(dim, dim))
    noisy_outer = (noisy_outer + noisy_outer.T) / 2  # post-processing
    raw = FeatureStats.from_sums(n, noisy_sum, noisy_outer)
    stats = FeatureStats(n, raw.mean, nearest_psd(raw.cov))
    report = {"epsilon": float(epsilon), "delta": float(delta), "sigma_sum": sigma_sum,
              "sigma_outer": sigma_outer, "clip_norm": float(clip_norm)}
    return stats, report
