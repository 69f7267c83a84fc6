"""Tests for augment_batch (per-sample flip, rotation, intensity jitter)."""

from __future__ import annotations

import torch

from client.data import augment_batch


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(n=16, c=1, s=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, s, s, generator=g) * 2 - 1


def test_shape_dtype_and_range():
    x = _batch(n=8, c=3)
    out = augment_batch(x, _gen(1), max_rotation_deg=30, intensity_jitter=0.5)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert not torch.equal(out, x)


def test_empty_batch():
    x = torch.zeros(0, 1, 16, 16)
    assert augment_batch(x).shape == (0, 1, 16, 16)
    assert augment_batch(x, _gen(0)).shape == (0, 1, 16, 16)


def test_identity_when_everything_disabled():
    x = _batch()
    out = augment_batch(x, _gen(0), flip=False, max_rotation_deg=0.0, intensity_jitter=0.0)
    assert torch.equal(out, x)
    assert out.data_ptr() != x.data_ptr()  # a new tensor; the input is untouched


def test_flip_only_mirrors_exactly_per_sample():
    x = _batch(n=64)
    out = augment_batch(x, _gen(3), flip=True, max_rotation_deg=0.0, intensity_jitter=0.0)
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54  # roughly half, chosen per sample


def test_deterministic_given_generator():
    x = _batch()
    a = augment_batch(x, _gen(5))
    b = augment_batch(x, _gen(5))
    c = augment_batch(x, _gen(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_rotation_pads_with_background_and_keeps_centre():
    x = torch.ones(4, 1, 32, 32)  # all foreground
    out = augment_batch(x, _gen(0), flip=False, max_rotation_deg=45.0, intensity_jitter=0.0)
    assert torch.allclose(out[:, :, 12:20, 12:20], torch.ones(4, 1, 8, 8), atol=1e-5)
    assert (out[:, 0, 0, 0] < 0).any()  # a rotated corner is filled with background (-1 side)
    background = -torch.ones(2, 1, 16, 16)
    rotated = augment_batch(background, _gen(0), flip=False, intensity_jitter=0.0)
    assert torch.allclose(rotated, background)  # background stays exactly -1 everywhere


def test_jitter_is_per_sample_affine():
    x = _batch(n=6)
    out = augment_batch(x, _gen(2), flip=False, max_rotation_deg=0.0, intensity_jitter=0.1)
    for o, xi in zip(out, x):
        inner = (o > -0.99) & (o < 0.99)  # unclamped pixels
        a = torch.stack([xi[inner], torch.ones_like(xi[inner])], 1)
        coef = torch.linalg.lstsq(a, o[inner].unsqueeze(1)).solution.squeeze()
        assert 0.9 - 1e-4 <= coef[0] <= 1.1 + 1e-4 and -0.1 - 1e-4 <= coef[1] <= 0.1 + 1e-4
        assert torch.allclose(a @ coef, o[inner], atol=1e-5)


def test_each_output_depends_only_on_its_own_input():
    x = _batch(n=5)
    y = x.clone()
    y[2] = -y[2]
    a = augment_batch(x, _gen(9))
    b = augment_batch(y, _gen(9))
    for i in (0, 1, 3, 4):
        assert torch.equal(a[i], b[i])
    assert not torch.equal(a[2], b[2])


def test_cpu_generator_with_default_dtype_double():
    x = _batch(n=3).double()
    out = augment_batch(x, _gen(0))
    assert out.dtype == torch.float64 and out.shape == x.shape
