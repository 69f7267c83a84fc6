"""Split one pooled dataset across federated sites (IID or Dirichlet non-IID over labels)."""

from __future__ import annotations

import numpy as np

_MAX_RESAMPLES = 10


def _iid_split(n: int, num_sites: int, rng: np.random.Generator) -> list[np.ndarray]:
    return list(np.array_split(rng.permutation(n), num_sites))


def _dirichlet_split(labels: np.ndarray, num_sites: int, alpha: float,
                     rng: np.random.Generator) -> list[np.ndarray]:
    """Per class, shuffle its examples and cut them by proportions ~ Dirichlet(alpha)."""
    parts: list[list[np.ndarray]] = [[] for _ in range(num_sites)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        props = rng.dirichlet(np.full(num_sites, alpha))
        cuts = (np.cumsum(props)[:-1] * members.size).round().astype(np.int64)
        for site, chunk in enumerate(np.split(members, cuts)):
            parts[site].append(chunk)
    return [np.concatenate(p) if p else np.empty(0, dtype=np.int64) for p in parts]


def _fill_empty_sites(parts: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Move one example from the currently largest site to each empty site."""
    parts = [p.copy() for p in parts]
    for site in range(len(parts)):
        if parts[site].size:
            continue
        donor = int(np.argmax([p.size for p in parts]))
        if parts[donor].size <= 1:
            break  # fewer examples than sites; nothing left to give
        take = int(rng.integers(parts[donor].size))
        parts[site] = parts[donor][take:take + 1]
        parts[donor] = np.delete(parts[donor], take)
    return parts


def partition_indices(labels: np.ndarray, num_sites: int, alpha: float | None,
                      seed: int) -> list[np.ndarray]:
    """Split ``range(len(labels))`` into ``num_sites`` disjoint, sorted index arrays.

    ``alpha=None`` gives an IID split (shuffled, sizes differ by at most one).
    Otherwise each class is divided by proportions drawn from
    Dirichlet(alpha * ones(num_sites)) (the usual non-IID label split, as in
    Flower Datasets' DirichletPartitioner): small alpha gives skewed label
    mixes, large alpha near-uniform ones. If ``len(labels) >= num_sites`` every
    site gets at least one example (bounded re-sampling, then moving single
    examples to empty sites). Deterministic given the arguments.
    """
    labels = np.asarray(labels).reshape(-1)
    if num_sites < 1:
        raise ValueError(f"num_sites must be >= 1, got {num_sites}")
    if alpha is not None and not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive number or None, got {alpha}")
    rng = np.random.default_rng([int(seed) % 2**32, 0x9A27])
    n = labels.shape[0]
    if alpha is None:
        parts = _iid_split(n, num_sites, rng)
    else:
        parts = _dirichlet_split(labels, num_sites, float(alpha), rng)
        for _ in range(_MAX_RESAMPLES):
            if n < num_sites or min(p.size for p in parts) > 0:
                break
            parts = _dirichlet_split(labels, num_sites, float(alpha), rng)
        parts = _fill_empty_sites(parts, rng)
    return [np.sort(p).astype(np.int64) for p in parts]
