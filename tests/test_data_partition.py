"""Tests for partition_indices (IID and Dirichlet non-IID splits)."""

from __future__ import annotations

import numpy as np
import pytest

from client.data import partition_indices


def _labels(n=1000, classes=4, seed=0):
    return np.random.default_rng(seed).integers(0, classes, n)


def _assert_exact_cover(parts, n):
    joined = np.concatenate(parts)
    assert joined.size == n
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))
    for p in parts:
        assert p.dtype == np.int64
        np.testing.assert_array_equal(p, np.sort(p))


@pytest.mark.parametrize("n,sites", [(1000, 3), (10, 10), (7, 3), (0, 2), (5, 1)])
def test_iid_near_equal_and_exact_cover(n, sites):
    parts = partition_indices(_labels(n), sites, None, seed=0)
    assert len(parts) == sites
    sizes = [p.size for p in parts]
    assert max(sizes) - min(sizes) <= 1
    _assert_exact_cover(parts, n)


def test_iid_is_shuffled_and_deterministic():
    labels = _labels(300)
    parts = partition_indices(labels, 3, None, seed=1)
    assert parts[0].max() > 150  # not a contiguous block
    again = partition_indices(labels, 3, None, seed=1)
    other = partition_indices(labels, 3, None, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


def _label_skew(parts, labels, classes):
    """Mean total-variation distance between each site's label mix and the global one."""
    global_mix = np.bincount(labels, minlength=classes) / labels.size
    dists = []
    for p in parts:
        mix = np.bincount(labels[p], minlength=classes) / max(p.size, 1)
        dists.append(0.5 * np.abs(mix - global_mix).sum())
    return float(np.mean(dists))


def test_dirichlet_small_alpha_skewed_large_alpha_uniform():
    labels = _labels(2000, classes=5)
    skewed = partition_indices(labels, 5, 0.1, seed=0)
    uniform = partition_indices(labels, 5, 100.0, seed=0)
    _assert_exact_cover(skewed, labels.size)
    _assert_exact_cover(uniform, labels.size)
    assert _label_skew(skewed, labels, 5) > 0.4
    assert _label_skew(uniform, labels, 5) < 0.08
    sizes = [p.size for p in uniform]
    assert max(sizes) < 1.3 * min(sizes)


def test_dirichlet_deterministic():
    labels = _labels(500)
    a = partition_indices(labels, 4, 0.5, seed=7)
    b = partition_indices(labels, 4, 0.5, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("seed", range(20))
def test_dirichlet_no_empty_site(seed):
    labels = _labels(12, classes=2, seed=seed)
    parts = partition_indices(labels, 10, 0.05, seed=seed)
    assert all(p.size >= 1 for p in parts)
    _assert_exact_cover(parts, 12)


def test_exactly_one_per_site_possible():
    labels = np.zeros(6, dtype=np.int64)
    parts = partition_indices(labels, 6, 0.01, seed=3)
    assert [p.size for p in parts] == [1] * 6


def test_fewer_examples_than_sites_leaves_some_empty():
    parts = partition_indices(np.array([0, 1]), 4, 0.5, seed=0)
    _assert_exact_cover(parts, 2)
    assert sum(p.size == 0 for p in parts) == 2


def test_invalid_arguments():
    with pytest.raises(ValueError):
        partition_indices(_labels(10), 0, None, 0)
    with pytest.raises(ValueError):
        partition_indices(_labels(10), 2, 0.0, 0)
    with pytest.raises(ValueError):
        partition_indices(_labels(10), 2, -1.0, 0)
