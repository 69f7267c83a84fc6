"""Precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020).

Each sample's manifold ball has the radius of its k-th nearest neighbour within its own set;
a point is "inside" a ball when its distance is <= that radius. Distances are computed in
row chunks, so memory stays O(chunk * M) (fine for 5k x 5k and larger).
"""

from __future__ import annotations

import numpy as np
import torch

CHUNK = 1024


def _as_tensor(x: np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    return t.reshape(t.shape[0], -1)


def _chunks(n: int, size: int = CHUNK):
    for start in range(0, n, size):
        yield start, min(n, start + size)


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) distance of each row to its k-th nearest other row (the row itself excluded)."""
    radii = torch.empty(x.shape[0], dtype=x.dtype)
    for start, stop in _chunks(x.shape[0]):
        dist = torch.cdist(x[start:stop], x)
        # the (k+1)-th smallest, since each row's own zero distance comes first
        radii[start:stop] = torch.topk(dist, k + 1, dim=1, largest=False).values[:, k]
    return radii


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """{"precision", "recall", "density", "coverage"} of (N, ...) real vs (M, ...) fake features."""
    real_t, fake_t = _as_tensor(real), _as_tensor(fake)
    if real_t.shape[1] != fake_t.shape[1]:
        raise ValueError(f"feature size mismatch: {real_t.shape[1]} vs {fake_t.shape[1]}")
    if k < 1 or real_t.shape[0] <= k or fake_t.shape[0] <= k:
        raise ValueError(f"need k >= 1 and more than k={k} real and fake samples")
    real_radii = knn_radii(real_t, k)
    fake_radii = knn_radii(fake_t, k)
    n_real, n_fake = real_t.shape[0], fake_t.shape[0]
    fake_in_real = torch.zeros(n_fake, dtype=torch.int64)  # balls of real containing each fake
    real_in_fake = torch.zeros(n_real, dtype=torch.bool)  # real inside some fake ball
    covered = torch.zeros(n_real, dtype=torch.bool)  # nearest fake inside the real ball
    for start, stop in _chunks(n_real):
        dist = torch.cdist(real_t[start:stop], fake_t)  # (chunk, M)
        inside_real = dist <= real_radii[start:stop, None]
        fake_in_real += inside_real.sum(dim=0)
        real_in_fake[start:stop] = (dist <= fake_radii[None, :]).any(dim=1)
        covered[start:stop] = dist.min(dim=1).values <= real_radii[start:stop]
    return {
        "precision": float((fake_in_real > 0).double().mean()),
        "recall": float(real_in_fake.double().mean()),
        "density": float(fake_in_real.double().mean() / k),
        "coverage": float(covered.double().mean()),
    }
