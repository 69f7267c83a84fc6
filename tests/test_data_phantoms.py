"""Tests for the embedded synthetic phantom dataset."""

from __future__ import annotations

import time

import numpy as np
import pytest

from client.data import CLASS_NAMES, load_site_dataset
from client.data.phantoms import ScannerProfile, render_phantoms, scanner_profile


def _render(labels, size=32, site=0, seed=0, rng_seed=1):
    rng = np.random.default_rng(rng_seed)
    return render_phantoms(np.asarray(labels), size, scanner_profile(site, seed), rng)


def test_class_names():
    assert CLASS_NAMES == ("normal", "lesion")


@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_render_shape_dtype_range(size):
    out = _render([0, 1, 1, 0, 1], size=size)
    assert out.shape == (5, 1, size, size)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.isfinite(out).all()


def test_render_empty_and_bad_labels():
    assert _render(np.zeros(0, dtype=np.int64)).shape == (0, 1, 32, 32)
    with pytest.raises(ValueError):
        _render([0, 2])


def test_render_deterministic_by_seed_and_different_across_seeds():
    labels = np.array([0, 1] * 4)
    a = _render(labels, rng_seed=5)
    b = _render(labels, rng_seed=5)
    c = _render(labels, rng_seed=6)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.02
    # Images within a batch differ from each other (random anatomy per image).
    assert np.abs(a[0] - a[2]).mean() > 0.02


def test_anatomy_independent_of_image_size():
    labels = np.array([0, 1, 0, 1])
    noiseless = ScannerProfile("test", 1.0, 1.0, 0.0, 0.0, 0.0)
    big = render_phantoms(labels, 64, noiseless, np.random.default_rng(3))
    small = render_phantoms(labels, 32, noiseless, np.random.default_rng(3))
    pooled = big.reshape(4, 1, 32, 2, 32, 2).mean(axis=(3, 5))
    assert np.abs(pooled - small).mean() < 0.03


def test_head_structure():
    out = _render([0] * 16, size=64)[:, 0]
    corners = np.concatenate([out[:, :4, :4], out[:, -4:, -4:]], axis=None)
    centre = out[:, 24:40, 24:40]
    assert corners.mean() < 0.08  # background ~0
    assert centre.mean() > 0.3  # brain tissue
    # The scalp ring: along the middle row, the brightest pixels are near the head edge.
    row = out[:, 32, :]
    edge = np.maximum(row[:, :16].max(1), row[:, 48:].max(1))
    assert (edge > row[:, 26:38].mean(1)).mean() > 0.9
    # Dark ventricles near the centre: the darkest central pixel is much darker than the mean.
    assert (centre.reshape(16, -1).min(1) < 0.5 * centre.reshape(16, -1).mean(1)).mean() > 0.9


def test_lesion_images_have_bright_blob():
    labels = np.array([0] * 40 + [1] * 40)
    out = _render(labels, size=32)[:, 0]
    c = (np.arange(32) + 0.5) / 16 - 1
    yy, xx = np.meshgrid(c, c, indexing="ij")
    brain = (xx**2 + yy**2) < 0.5**2  # inside every head, excludes the scalp ring
    peak = out[:, brain].max(1)
    assert peak[labels == 1].mean() > peak[labels == 0].mean() + 0.1
    bright = (out[:, brain] > 0.85).sum(1)
    assert np.median(bright[labels == 1]) > np.median(bright[labels == 0]) + 2


def test_scanner_profiles_differ():
    profiles = [scanner_profile(s, seed=0) for s in range(5)]
    assert [p.name for p in profiles[:3]] == ["A", "B", "C"]
    assert len({(p.gamma, p.gain, p.noise_sigma, p.bias_strength) for p in profiles}) == 5
    assert profiles[0].noise_sigma < profiles[2].noise_sigma
    assert profiles[1].bias_strength > profiles[0].bias_strength
    assert profiles[2].gamma > profiles[0].gamma
    assert scanner_profile(4, seed=0) == scanner_profile(4, seed=0)
    assert scanner_profile(4, seed=0) != scanner_profile(4, seed=1)
    with pytest.raises(ValueError):
        scanner_profile(-1, 0)


def test_site_statistics_differ():
    labels = np.array([0, 1] * 20)
    imgs = [_render(labels, site=s, rng_seed=9)[:, 0] for s in range(3)]
    noise = [np.concatenate([im[:, :5, :5], im[:, -5:, :5]], axis=None).std() for im in imgs]
    means = [im.mean() for im in imgs]
    assert noise[2] > 2 * noise[0]  # site C is noisier than site A
    assert min(abs(means[i] - means[j]) for i in range(3) for j in range(i + 1, 3)) > 0.005
    # Site B's bias field makes one side of the head brighter than the other.
    def asymmetry(im):
        left, right = im[:, :, 6:16].mean(), im[:, :, 16:26].mean()
        top, bottom = im[:, 6:16].mean(), im[:, 16:26].mean()
        return abs(left - right) + abs(top - bottom)
    assert asymmetry(imgs[1]) > 2 * asymmetry(imgs[0])


def test_render_speed():
    labels = np.random.default_rng(0).integers(0, 2, 600)
    start = time.perf_counter()
    _render(labels, size=32)
    assert time.perf_counter() - start < 1.0


def test_phantom_site_dataset():
    data = load_site_dataset("phantom", site=1, num_sites=3, image_size=32, samples_per_site=50, seed=4)
    assert len(data) == 50
    assert data.images.shape == (50, 1, 32, 32) and data.images.dtype == np.float32
    assert data.labels.dtype == np.int64
    assert data.images.min() >= -1.0 and data.images.max() <= 1.0
    assert data.num_classes == 2 and data.class_names == ["normal", "lesion"]
    assert "phantom" in data.source and "'B'" in data.source
    counts = data.label_counts()
    assert set(counts) == {"normal", "lesion"} and sum(counts.values()) == 50


def test_phantom_dataset_deterministic_and_pool_prevalence():
    kw = dict(num_sites=3, image_size=16, samples_per_site=40, seed=2)
    sites = [load_site_dataset("phantom", site=s, **kw) for s in range(3)]
    again = load_site_dataset("phantom", site=0, **kw)
    np.testing.assert_array_equal(sites[0].images, again.images)
    np.testing.assert_array_equal(sites[0].labels, again.labels)
    other_seed = load_site_dataset("phantom", site=0, **{**kw, "seed": 3})
    assert not np.array_equal(sites[0].images, other_seed.images)
    labels = np.concatenate([s.labels for s in sites])
    assert labels.size == 120 and labels.sum() == 48  # prevalence exactly 0.4 over the pool
    assert not np.array_equal(sites[0].images[:5], sites[1].images[:5])


def test_phantom_dirichlet_skews_sites():
    kw = dict(num_sites=4, image_size=16, samples_per_site=50, seed=0)
    skewed = [load_site_dataset("phantom", site=s, alpha=0.1, **kw).labels.mean() for s in range(4)]
    iid = [load_site_dataset("phantom", site=s, **kw).labels.mean() for s in range(4)]
    assert np.std(skewed) > np.std(iid) + 0.1
