"""Gaussian feature stats: exact pooling, serialisation and the DP release."""

import json

import numpy as np
import pytest

from medgan_models.metrics import (
    FeatureStats,
    analytic_gaussian_sigma,
    classic_gaussian_sigma,
    feature_stats,
    gaussian_delta,
    noisy_stats,
    pool_stats,
)


def _data(seed: int, n: int, d: int = 6, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ mixing + shift


def test_feature_stats_match_numpy():
    x = _data(0, 50)
    stats = feature_stats(x)
    assert stats.count == 50
    np.testing.assert_allclose(stats.mean, x.mean(axis=0))
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False, ddof=1))


def test_pooling_three_unequal_parts_equals_concatenation():
    parts = [_data(1, 7, shift=5.0), _data(2, 130, shift=-3.0), _data(3, 41)]
    pooled = pool_stats([feature_stats(p) for p in parts])
    exact = feature_stats(np.concatenate(parts))
    assert pooled.count == exact.count == 178
    np.testing.assert_allclose(pooled.mean, exact.mean, atol=1e-6)
    np.testing.assert_allclose(pooled.cov, exact.cov, atol=1e-6)
    # an average of the covariances would be far off: the parts have different means
    naive = np.mean([feature_stats(p).cov for p in parts], axis=0)
    assert np.abs(naive - exact.cov).max() > 1.0


def test_pooling_handles_single_sample_parts():
    x = _data(4, 5)
    pooled = pool_stats([feature_stats(x[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(pooled.cov, feature_stats(x).cov, atol=1e-9)


def test_pooling_rejects_mismatched_dimensions():
    with pytest.raises(ValueError, match="dimension"):
        pool_stats([feature_stats(_data(0, 5, d=3)), feature_stats(_data(0, 5, d=4))])


def test_sums_and_dict_round_trip():
    stats = feature_stats(_data(5, 20))
    again = FeatureStats.from_sums(*stats.to_sums())
    np.testing.assert_allclose(again.mean, stats.mean)
    np.testing.assert_allclose(again.cov, stats.cov, atol=1e-9)
    loaded = FeatureStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert loaded.count == stats.count
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.cov, stats.cov)
    assert loaded.mean.dtype == loaded.cov.dtype == np.float64


def test_analytic_sigma_meets_delta_tightly_and_beats_classic_bound():
    for epsilon in (0.1, 0.5, 0.9, 2.0, 8.0):
        sigma = analytic_gaussian_sigma(epsilon, 1e-5, 2.0)
        assert gaussian_delta(sigma, epsilon, 2.0) <= 1e-5
        assert gaussian_delta(sigma * 0.99, epsilon, 2.0) > 1e-5  # tight
        if epsilon < 1:
            assert sigma < classic_gaussian_sigma(epsilon, 1e-5, 2.0)
    # known value (Balle & Wang 2018): eps = 1, delta = 1e-5, sensitivity 1 -> sigma ~ 3.73
    assert analytic_gaussian_sigma(1.0, 1e-5, 1.0) == pytest.approx(3.73, abs=0.01)


def test_noisy_stats_with_huge_epsilon_is_close_to_exact():
    x = _data(6, 500, d=4)
    clip = float(np.linalg.norm(x, axis=1).max()) + 1.0  # no row is clipped
    stats, report = noisy_stats(x, 1e6, 1e-5, clip, np.random.default_rng(0))
    exact = feature_stats(x)
    assert stats.count == 500
    np.testing.assert_allclose(stats.mean, exact.mean, atol=1e-2)
    np.testing.assert_allclose(stats.cov, exact.cov, atol=5e-2 * np.abs(exact.cov).max())
    assert set(report) >= {"epsilon", "delta", "sigma_sum", "sigma_outer", "clip_norm"}
    assert report["sigma_sum"] == pytest.approx(analytic_gaussian_sigma(5e5, 5e-6, clip))
    assert report["sigma_outer"] == pytest.approx(analytic_gaussian_sigma(5e5, 5e-6, clip ** 2))


def test_noisy_stats_sigma_grows_as_epsilon_shrinks_and_cov_stays_psd():
    x = _data(7, 100, d=5)
    sigmas = []
    for epsilon in (10.0, 1.0, 0.1):
        stats, report = noisy_stats(x, epsilon, 1e-5, 1.0, np.random.default_rng(1))
        sigmas.append((report["sigma_sum"], report["sigma_outer"]))
        np.testing.assert_allclose(stats.cov, stats.cov.T)
        assert np.linalg.eigvalsh(stats.cov).min() >= -1e-10
    assert sigmas[0][0] < sigmas[1][0] < sigmas[2][0]
    assert sigmas[0][1] < sigmas[1][1] < sigmas[2][1]


def test_noisy_stats_clips_rows():
    rng = np.random.default_rng(8)
    x = np.column_stack([np.full(400, 10.0), rng.normal(0, 0.1, 400)])  # norms ~10
    stats, report = noisy_stats(x, 1e6, 1e-5, 1.0, np.random.default_rng(2))
    assert report["clip_norm"] == 1.0
    assert stats.mean[0] == pytest.approx(1.0, abs=1e-2)  # clipped to norm 1, not 10
    assert np.linalg.norm(stats.mean) <= 1.0 + 1e-2


def test_noisy_stats_rejects_bad_privacy_parameters():
    x = _data(9, 10)
    with pytest.raises(ValueError):
        noisy_stats(x, 0.0, 1e-5, 1.0, np.random.default_rng(0))
    with pytest.raises(ValueError):
        noisy_stats(x, 1.0, 1.5, 1.0, np.random.default_rng(0))
    with pytest.raises(ValueError):
        noisy_stats(x, 1.0, 1e-5, 0.0, np.random.default_rng(0))
