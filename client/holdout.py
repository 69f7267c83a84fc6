"""A site's held-out images: never trained on, used for its evaluation (and as non-members)."""

from __future__ import annotations

import numpy as np

from client.data import SiteData


_SPLITS: dict[tuple[int, float, int], tuple[SiteData, SiteData]] = {}


def cached_split(data: SiteData, fraction: float, seed: int) -> tuple[SiteData, SiteData]:
    """:func:`split_holdout`, once per loaded data set and process (rounds reuse it)."""
    key = (id(data), fraction, seed)
    if key not in _SPLITS:
        _SPLITS[key] = split_holdout(data, fraction, seed)
    return _SPLITS[key]


def split_holdout(data: SiteData, fraction: float, seed: int) -> tuple[SiteData, SiteData]:
    """Deterministic (train, holdout) split, stratified by class; holdout may be empty."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(data.labels):
        members = np.flatnonzero(data.labels == label)
        take = int(round(len(members) * fraction))
        if take >= len(members):  # never leave a class without training images
            take = len(members) - 1
        held.append(rng.permutation(members)[:take])
    holdout = np.sort(np.concatenate(held)) if held else np.array([], np.int64)
    train = np.setdiff1d(np.arange(len(data)), holdout)
    return _subset(data, train), _subset(data, holdout)


def _subset(data: SiteData, indices: np.ndarray) -> SiteData:
    return SiteData(data.images[indices], data.labels[indices], data.num_classes,
                    list(data.class_names), data.source)
