"""Canary images for the one-run privacy audit (Steinke, Nasr & Jagielski, NeurIPS 2023).

``m`` canaries are drawn from a seed; each is included in the canary site's training data
with probability 1/2, independently. After training, the auditor scores every canary and
guesses which were included; how many guesses are right bounds epsilon from below
(:func:`audit.bounds.one_run_epsilon_lower_bound`).

A canary is a smooth random blob pattern, unlike any scan: a near worst case for privacy,
since a model that memorises records memorises such outliers first. The inclusion mask is the
auditor's secret; here it is derived from the run seed so that ``medgan audit`` can rebuild it.
Canaries are records like any other: they count in the site's size, sample rate and epsilon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from client.data.site_data import SiteData

CANARY_SITE = 0  # partition id of the site that holds the canaries
_COARSE = 4  # side of the random field a canary is upsampled from


@dataclass(frozen=True)
class CanarySet:
    """``images`` (m, C, S, S) in [-1, 1], ``labels`` (m,), ``included`` (m,) bool."""

    images: np.ndarray
    labels: np.ndarray
    included: np.ndarray

    def __len__(self) -> int:
        """Number of canaries drawn (included or not)."""
        return int(self.images.shape[0])


def make_canaries(count: int, image_size: int, channels: int, num_classes: int,
                  seed: int) -> CanarySet:
    """Draw ``count`` canaries and their inclusion coin flips, deterministically from ``seed``."""
    if count < 0:
        raise ValueError(f"canary count must be >= 0, got {count}")
    rng = np.random.default_rng([int(seed) % 2**32, 0xCA9A])
    coarse = rng.standard_normal((count, channels, _COARSE, _COARSE))
    grid = (np.arange(image_size) + 0.5) * _COARSE / image_size - 0.5
    index = np.clip(grid, 0, _COARSE - 1)
    low = np.floor(index).astype(int)
    high = np.minimum(low + 1, _COARSE - 1)
    frac = (index - low)[None, None, :]
    rows = coarse[:, :, low, :] * (1 - frac[..., None]) + coarse[:, :, high, :] * frac[..., None]
    field = rows[..., low] * (1 - frac) + rows[..., high] * frac  # bilinear upsampling
    images = np.tanh(2.0 * field).astype(np.float32)
    labels = rng.integers(0, max(num_classes, 1), count).astype(np.int64)
    included = rng.random(count) < 0.5
    return CanarySet(images, labels, included)


def with_canaries(train: SiteData, canaries: CanarySet) -> SiteData:
    """``train`` plus the included canaries (the held-out images are never touched)."""
    keep = canaries.included
    if not keep.any():
        return train
    return SiteData(np.concatenate([train.images, canaries.images[keep]]),
                    np.concatenate([train.labels, canaries.labels[keep]]), train.num_classes,
                    list(train.class_names), train.source + f" + {int(keep.sum())} canaries")
