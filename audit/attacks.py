"""Membership-inference attacks against a trained GAN (higher score = "more likely a member").

- :func:`logan_scores`: white-box (Hayes et al., "LOGAN", PoPETs 2019): the released
  discriminator's score of the query; an overfit discriminator scores its training images high.
- :func:`gan_leaks_scores`: full black-box (Chen et al., "GAN-Leaks", CCS 2020): the attacker
  only sees generated samples; a query close to its nearest generated sample is likely a member.
  Calibrated as in the paper by subtracting the same distance to a reference model of the
  population: here the nearest of a reference set of real, never-trained images, which removes
  how "typical" a query is from its score.
Conditional models are attacked class by class (the query's label is known to the attacker).
"""

from __future__ import annotations

import numpy as np
import torch

from medgan_models.networks import Discriminator, Generator
from medgan_models.sampling import sample_images


@torch.no_grad()
def logan_scores(discriminator: Discriminator, images: np.ndarray, labels: np.ndarray,
                 device: torch.device | str = "cpu", batch_size: int = 256) -> np.ndarray:
    """The discriminator's raw score ("looks real") of each query image."""
    discriminator = discriminator.to(device).eval()
    conditional = discriminator.projection is not None
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start:start + batch_size]).to(device)
        y = torch.from_numpy(labels[start:start + batch_size]).to(device) if conditional else None
        out.append(discriminator(x, y).float().cpu())
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


def nearest_distances(queries: np.ndarray, pool: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Euclidean distance (per pixel, RMS) of each query to its nearest image in ``pool``."""
    if len(pool) == 0:
        raise ValueError("nearest_distances needs a non-empty pool")
    q = torch.from_numpy(queries.reshape(len(queries), -1).astype(np.float32))
    p = torch.from_numpy(pool.reshape(len(pool), -1).astype(np.float32))
    best = [torch.cdist(q[i:i + chunk], p).min(dim=1).values for i in range(0, len(q), chunk)]
    return (torch.cat(best) / np.sqrt(q.shape[1])).numpy().astype(np.float64)


def generated_pool(generator: Generator, num_classes: int, per_class: int, seed: int,
                   device: torch.device | str = "cpu") -> dict[int, np.ndarray]:
    """What a black-box attacker sees: ``per_class`` samples of each class (key 0 if none)."""
    classes = range(num_classes) if num_classes > 1 else [0]
    pool = {}
    for c in classes:
        labels = torch.full((per_class,), c, dtype=torch.long) if num_classes > 1 else None
        pool[c] = sample_images(generator, labels, per_class, seed + c, device).numpy()
    return pool


def gan_leaks_scores(images: np.ndarray, labels: np.ndarray, generated: dict[int, np.ndarray],
                     reference: np.ndarray | None = None,
                     reference_labels: np.ndarray | None = None) -> np.ndarray:
    """Minus the distance to the nearest generated sample of the query's class, plus (when a
    reference set is given) the distance to the nearest reference image of that class."""
    conditional = len(generated) > 1
    scores = np.zeros(len(images))
    for c, pool in generated.items():
        rows = np.flatnonzero(labels == c) if conditional else np.arange(len(images))
        if len(rows) == 0:
            continue
        scores[rows] = -nearest_distances(images[rows], pool)
        if reference is not None and reference_labels is not None:
            ref = reference[reference_labels == c] if conditional else reference
            if len(ref) == 0:
                raise ValueError(f"no reference image of class {c} to calibrate GAN-Leaks")
            scores[rows] += nearest_distances(images[rows], ref)
    return scores
