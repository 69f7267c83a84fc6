"""Hand-crafted radiomic features and the Fréchet Radiomic Distance (FRD) built on them.

FRD here is a Fréchet distance between Gaussians fitted to z-scored hand-crafted features
(first-order intensity, GLCM texture, gradient and a coarse spatial layout), in the spirit
of the radiomics-based FRD of Osuala et al.; it needs no pretrained weights.
"""

from __future__ import annotations

import numpy as np
from skimage.feature import graycomatrix, graycoprops

from .frechet import frechet_distance
from .gaussian_stats import FeatureStats, feature_stats

HIST_BINS = 32
GLCM_LEVELS = 32
GLCM_DISTANCES = (1, 2)
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
FOREGROUND_THRESHOLD = 0.5  # on the [0, 1] intensity scale (0 in [-1, 1])
LAYOUT_GRID = 4
STD_FLOOR = 1e-8

FIRST_ORDER_NAMES = ["mean", "std", "skewness", "kurtosis", "entropy", "p10", "p50", "p90",
                     "energy", "foreground_fraction"]
GLCM_NAMES = [f"glcm_{prop}_d{d}" for d in GLCM_DISTANCES for prop in GLCM_PROPS]
GRADIENT_NAMES = ["gradient_mean", "gradient_std"]
LAYOUT_NAMES = [f"layout_{r}_{c}" for r in range(LAYOUT_GRID) for c in range(LAYOUT_GRID)]
FEATURE_NAMES: list[str] = FIRST_ORDER_NAMES + GLCM_NAMES + GRADIENT_NAMES + LAYOUT_NAMES


def _grayscale01(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W) channel mean on [0, 1], float64."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {x.shape}")
    return np.clip((x.mean(axis=1) + 1.0) / 2.0, 0.0, 1.0)


def _first_order(gray: np.ndarray) -> np.ndarray:
    """(N, 10) intensity statistics; skewness/kurtosis are 0 for constant images."""
    n = gray.shape[0]
    flat = gray.reshape(n, -1)
    mean = flat.mean(axis=1)
    centred = flat - mean[:, None]
    var = (centred ** 2).mean(axis=1)
    std = np.sqrt(var)
    flat_image = var <= STD_FLOOR ** 2
    safe_var = np.where(flat_image, 1.0, var)
    skew = np.where(flat_image, 0.0, (centred ** 3).mean(axis=1) / safe_var ** 1.5)
    kurt = np.where(flat_image, 0.0, (centred ** 4).mean(axis=1) / safe_var ** 2 - 3.0)
    bins = np.minimum((flat * HIST_BINS).astype(np.int64), HIST_BINS - 1)
    offsets = (np.arange(n) * HIST_BINS)[:, None]
    hist = np.bincount((bins + offsets).ravel(), minlength=n * HIST_BINS).reshape(n, HIST_BINS)
    prob = hist / flat.shape[1]
    entropy = 0.0 - (prob * np.log2(np.where(prob > 0, prob, 1.0))).sum(axis=1)
    p10, p50, p90 = np.percentile(flat, (10, 50, 90), axis=1)
    energy = (flat ** 2).mean(axis=1)
    foreground = (flat > FOREGROUND_THRESHOLD).mean(axis=1)
    return np.stack([mean, std, skew, kurt, entropy, p10, p50, p90, energy, foreground], axis=1)


def _glcm(gray: np.ndarray) -> np.ndarray:
    """(N, 12) GLCM properties on 32 grey levels, angle-averaged, per distance."""
    levels = np.minimum((gray * GLCM_LEVELS).astype(np.uint8), GLCM_LEVELS - 1)
    out = np.empty((gray.shape[0], len(GLCM_NAMES)))
    for i, image in enumerate(levels):
        matrix = graycomatrix(image, GLCM_DISTANCES, GLCM_ANGLES, levels=GLCM_LEVELS,
                              symmetric=True, normed=True)
        props = np.stack([graycoprops(matrix, p).mean(axis=1) for p in GLCM_PROPS], axis=0)
        out[i] = props.T.reshape(-1)  # distance-major, matching GLCM_NAMES
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _gradient(gray: np.ndarray) -> np.ndarray:
    """(N, 2) mean and std of the gradient magnitude (central differences)."""
    if min(gray.shape[1:]) < 2:
        return np.zeros((gray.shape[0], 2))
    grad_y, grad_x = np.gradient(gray, axis=(1, 2))
    magnitude = np.hypot(grad_x, grad_y).reshape(gray.shape[0], -1)
    return np.stack([magnitude.mean(axis=1), magnitude.std(axis=1)], axis=1)


def _layout(gray: np.ndarray) -> np.ndarray:
    """(N, 16) means of a 4 x 4 grid of blocks: a downsampled spatial layout."""
    n, height, width = gray.shape
    if height < LAYOUT_GRID or width < LAYOUT_GRID:
        raise ValueError(f"images must be at least {LAYOUT_GRID} x {LAYOUT_GRID}")
    rows = (np.arange(LAYOUT_GRID) * height) // LAYOUT_GRID
    cols = (np.arange(LAYOUT_GRID) * width) // LAYOUT_GRID
    sums = np.add.reduceat(np.add.reduceat(gray, rows, axis=1), cols, axis=2)
    counts = np.outer(np.diff(np.append(rows, height)), np.diff(np.append(cols, width)))
    return (sums / counts).reshape(n, -1)


def radiomic_features(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) images in [-1, 1] -> (N, len(FEATURE_NAMES)) float64 finite features."""
    gray = _grayscale01(images)
    if gray.shape[0] == 0:
        return np.zeros((0, len(FEATURE_NAMES)))
    features = np.concatenate(
        [_first_order(gray), _glcm(gray), _gradient(gray), _layout(gray)], axis=1)
    return np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)


def _mean_std(reference: np.ndarray | FeatureStats) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(reference, FeatureStats):
        return reference.mean, np.sqrt(np.clip(np.diag(reference.cov), 0, None))
    if isinstance(reference, tuple):
        mean, std = reference
        return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    x = np.asarray(reference, dtype=np.float64)
    std = x.std(axis=0, ddof=1) if x.shape[0] > 1 else np.zeros(x.shape[1])
    return x.mean(axis=0), std


def standardise(features: np.ndarray,
                reference_stats: FeatureStats | tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """z-score (N, D) ``features`` with the reference mean and std (std floored at 1e-8).

    ``reference_stats`` is a :class:`FeatureStats` (std = sqrt of the cov diagonal) or a
    (mean, std) pair.
    """
    mean, std = _mean_std(reference_stats)
    return (np.asarray(features, dtype=np.float64) - mean) / np.maximum(std, STD_FLOOR)


def standardise_stats(stats: FeatureStats,
                      reference_stats: FeatureStats | tuple[np.ndarray, np.ndarray]
                      ) -> FeatureStats:
    """The stats of ``standardise(features, reference_stats)`` computed from ``stats`` alone."""
    mean, std = _mean_std(reference_stats)
    scale = 1.0 / np.maximum(std, STD_FLOOR)
    return FeatureStats(stats.count, (stats.mean - mean) * scale,
                        stats.cov * np.outer(scale, scale))


def frechet_radiomic_distance(real_features: np.ndarray | FeatureStats,
                              fake_features: np.ndarray | FeatureStats) -> float:
    """FRD: Fréchet distance after z-scoring both sets with the REAL features' mean/std.

    Either side may be raw (N, D) features or their :class:`FeatureStats` (e.g. pooled
    federated stats), since z-scoring is affine.
    """
    real = real_features if isinstance(real_features, FeatureStats) \
        else feature_stats(real_features)
    fake = fake_features if isinstance(fake_features, FeatureStats) \
        else feature_stats(fake_features)
    return frechet_distance(standardise_stats(real, real), standardise_stats(fake, real))
