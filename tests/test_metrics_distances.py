"""Fréchet distance, PRDC, radiomic features / FRD and the random-CNN embedding."""

import importlib

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm

from medgan_models.metrics import (
    FEATURE_NAMES,
    feature_stats,
    frechet_distance,
    frechet_radiomic_distance,
    prdc,
    radiomic_features,
    random_features,
    standardise,
    standardise_stats,
)
from client.data.sources import load_site_dataset

prdc_module = importlib.import_module("medgan_models.metrics.prdc")


def _random_cov(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def discs(n: int, size: int = 32, seed: int = 0, region: tuple[float, float] = (0.25, 0.75)
          ) -> np.ndarray:
    """Bright discs of random radius/position on a dark background of random noise level."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, 1, size, size))
    for i in range(n):
        cy, cx = rng.uniform(*region, size=2) * size
        radius = rng.uniform(0.12, 0.22) * size
        noise = rng.uniform(0.01, 0.06)
        image = np.full((size, size), -0.9) + rng.normal(0, noise, (size, size))
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = rng.uniform(0.5, 0.9)
        out[i, 0] = image
    return np.clip(out, -1, 1)


# ---------------------------------------------------------------- Fréchet distance

def test_frechet_of_a_distribution_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(400, 10)) * np.arange(1, 11)
    stats = feature_stats(x)
    assert frechet_distance(stats, stats) < 1e-6


def test_frechet_equal_covariances_shifted_mean_is_squared_shift():
    rng = np.random.default_rng(1)
    cov, mean, shift = _random_cov(rng, 8), rng.normal(size=8), rng.normal(size=8)
    assert frechet_distance((mean, cov), (mean + shift, cov)) == pytest.approx(
        float(shift @ shift), rel=1e-8, abs=1e-8)


def test_frechet_diagonal_closed_form():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 4, 6), rng.uniform(0.1, 4, 6)
    mu = rng.normal(size=6)
    expected = float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + mu @ mu)
    assert frechet_distance((mu, np.diag(a)), (np.zeros(6), np.diag(b))) == pytest.approx(
        expected, rel=1e-9)


def test_frechet_matches_sqrtm_reference_on_full_rank_covariances():
    rng = np.random.default_rng(3)
    ca, cb = _random_cov(rng, 12), _random_cov(rng, 12)
    ma, mb = rng.normal(size=12), rng.normal(size=12)
    reference = float(((ma - mb) ** 2).sum() + np.trace(ca + cb - 2 * sqrtm(ca @ cb).real))
    assert frechet_distance((ma, ca), (mb, cb)) == pytest.approx(reference, rel=1e-7)


def test_frechet_is_finite_for_rank_deficient_few_sample_covariances():
    rng = np.random.default_rng(4)
    a = feature_stats(rng.normal(size=(5, 40)))  # N < D: rank 4
    b = feature_stats(rng.normal(size=(7, 40)) + 0.5)
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value >= 0
    assert frechet_distance(a, a) < 1e-6
    zero = (np.zeros(40), np.zeros((40, 40)))  # fully singular
    assert frechet_distance(zero, zero) == 0.0
    assert frechet_distance(zero, b) == pytest.approx(
        float(b.mean @ b.mean + np.trace(b.cov)), rel=1e-9)


def test_frechet_rejects_mismatched_dimensions():
    with pytest.raises(ValueError):
        frechet_distance((np.zeros(3), np.eye(3)), (np.zeros(4), np.eye(4)))


# ---------------------------------------------------------------- PRDC

def test_prdc_identical_sets():
    x = np.random.default_rng(5).normal(size=(300, 8))
    scores = prdc(x, x.copy(), k=5)
    assert scores["precision"] == scores["recall"] == scores["coverage"] == 1.0
    assert 0.8 < scores["density"] < 1.6


def test_prdc_far_disjoint_sets_score_zero():
    x = np.random.default_rng(6).normal(size=(200, 8))
    scores = prdc(x, x + 1000.0, k=5)
    assert scores == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_mode_collapse_high_precision_low_recall_and_coverage():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(300, 8))
    fake = real[0] + rng.normal(0, 1e-3, size=(300, 8))  # all fakes near one real point
    scores = prdc(real, fake, k=5)
    assert scores["precision"] > 0.95
    assert scores["recall"] < 0.05
    assert scores["coverage"] < 0.1


def test_prdc_chunking_does_not_change_results(monkeypatch):
    rng = np.random.default_rng(8)
    real, fake = rng.normal(size=(90, 5)), rng.normal(0.3, 1.2, size=(70, 5))
    whole = prdc(real, fake, k=3)
    monkeypatch.setattr(prdc_module, "CHUNK", 16)
    assert prdc(real, fake, k=3) == whole
    assert 0 < whole["precision"] < 1 and 0 < whole["coverage"] < 1


def test_prdc_needs_more_samples_than_k():
    with pytest.raises(ValueError):
        prdc(np.zeros((5, 2)), np.ones((9, 2)), k=5)


# ---------------------------------------------------------------- radiomics / FRD

@pytest.mark.parametrize("shape", [(3, 1, 16, 16), (2, 3, 32, 32), (2, 1, 64, 64),
                                   (2, 1, 30, 22)])
def test_radiomic_feature_shapes(shape):
    images = np.random.default_rng(9).uniform(-1, 1, shape)
    features = radiomic_features(images)
    assert features.shape == (shape[0], len(FEATURE_NAMES)) == (shape[0], 40)
    assert features.dtype == np.float64 and np.isfinite(features).all()
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_radiomic_features_of_constant_images_are_finite():
    images = np.stack([np.full((1, 32, 32), v) for v in (-1.0, 0.0, 0.3, 1.0)])
    features = radiomic_features(images)
    assert np.isfinite(features).all()
    named = dict(zip(FEATURE_NAMES, features[3]))
    assert named["mean"] == 1.0 and named["std"] == 0.0 and named["skewness"] == 0.0
    assert named["foreground_fraction"] == 1.0 and named["glcm_contrast_d1"] == 0.0


def test_radiomic_features_use_the_channel_mean():
    gray = discs(3, seed=1)
    np.testing.assert_allclose(radiomic_features(np.repeat(gray, 3, axis=1)),
                               radiomic_features(gray))


def test_layout_features_follow_spatial_structure():
    image = np.full((1, 1, 32, 32), -1.0)
    image[..., :8, :8] = 1.0  # top-left block bright
    named = dict(zip(FEATURE_NAMES, radiomic_features(image)[0]))
    assert named["layout_0_0"] == 1.0 and named["layout_3_3"] == 0.0


def test_frd_ranks_similar_images_below_noise_and_sees_layout():
    real = radiomic_features(discs(200, seed=10))
    rng = np.random.default_rng(11)
    fresh = discs(200, seed=12)  # a new draw of the same distribution
    similar = np.clip(fresh + rng.normal(0, 0.02, fresh.shape), -1, 1)
    noise = rng.uniform(-1, 1, (200, 1, 32, 32))
    moved = discs(200, seed=13, region=(0.15, 0.35))  # discs crowded in the top-left
    frd = {name: frechet_radiomic_distance(real, radiomic_features(images))
           for name, images in [("fresh", fresh), ("similar", similar), ("moved", moved),
                                ("noise", noise)]}
    assert frd["fresh"] < frd["similar"] < frd["noise"]
    assert frd["fresh"] < frd["moved"] < frd["noise"]
    assert frd["similar"] < 0.1 * frd["noise"]
    assert frechet_radiomic_distance(real, real) < 1e-6


def test_standardise_and_stats_paths_agree():
    real = radiomic_features(discs(60, seed=14))
    fake = radiomic_features(discs(50, seed=15, region=(0.3, 0.5)))
    reference = feature_stats(real)
    z = standardise(real, reference)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-9)
    varying = real.std(axis=0) > 1e-6
    np.testing.assert_allclose(z.std(axis=0, ddof=1)[varying], 1, atol=1e-9)
    via_stats = standardise_stats(feature_stats(fake), reference)
    direct = feature_stats(standardise(fake, reference))
    np.testing.assert_allclose(via_stats.mean, direct.mean, atol=1e-9)
    np.testing.assert_allclose(via_stats.cov, direct.cov, atol=1e-6)
    assert frechet_radiomic_distance(reference, feature_stats(fake)) == pytest.approx(
        frechet_radiomic_distance(real, fake), rel=1e-9)


def test_random_embedding_is_fixed_whatever_the_global_seed():
    images = np.random.default_rng(9).uniform(-1, 1, size=(5, 1, 16, 16)).astype(np.float32)
    torch.manual_seed(1)
    first = random_features(images)
    torch.manual_seed(2)
    assert np.array_equal(first, random_features(images))
    assert first.shape == (5, 128 * 16) and first.dtype == np.float64
    assert random_features(np.repeat(images, 3, axis=1)).shape == first.shape  # RGB too
    with pytest.raises(ValueError, match="N, C, H, W"):
        random_features(images[0])


def test_prdc_in_the_random_embedding_separates_real_collapsed_and_noise():
    data = load_site_dataset("phantom", 0, 1, 32, 1, samples_per_site=300)
    real, other = random_features(data.images[:100]), random_features(data.images[100:])
    same = prdc(real, other, k=5)
    assert min(same["precision"], same["recall"], same["coverage"]) > 0.8
    rng = np.random.default_rng(10)
    collapsed = np.repeat(data.images[:2], 100, axis=0) + rng.normal(0, 0.01, (200, 1, 32, 32))
    one_mode = prdc(real, random_features(collapsed.astype(np.float32)), k=5)
    assert one_mode["recall"] < 0.1 and one_mode["coverage"] < 0.1
    noise = prdc(real, random_features(rng.uniform(-1, 1, (200, 1, 32, 32))), k=5)
    assert noise["precision"] == 0.0 and noise["coverage"] == 0.0
