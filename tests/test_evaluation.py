"""Site-side evaluation pieces: holdout split, stats transport, weighted site metrics."""

import numpy as np
import pytest
import torch

from client.data import SiteData
from client.holdout import split_holdout
from client.site_evaluation import _REAL_CACHE, evaluate_generator, real_statistics
from medgan_models.config import RunConfig
from medgan_models.metrics import feature_stats, pool_stats
from medgan_models.networks import build_models
from medgan_models.protocol import stats_from_arrays, stats_to_arrays
from medgan_models.weights import pair_state
from server.evaluation import weighted_site_metrics


def site(n=60, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return SiteData(rng.uniform(-1, 1, (n, 1, size, size)).astype(np.float32),
                    (np.arange(n) % 3 == 0).astype(np.int64), 2, ["a", "b"], "test")


def test_holdout_is_stratified_disjoint_and_deterministic():
    data = site()
    train, holdout = split_holdout(data, 0.25, seed=3)
    assert len(train) + len(holdout) == len(data) and len(holdout) == 15
    assert sorted(np.unique(holdout.labels)) == [0, 1]
    again = split_holdout(data, 0.25, seed=3)[1]
    assert np.array_equal(again.images, holdout.images)
    rows = {row.tobytes() for row in train.images}
    assert not any(row.tobytes() in rows for row in holdout.images)
    assert len(split_holdout(data, 0.0, 0)[1]) == 0


def test_stats_travel_and_pool_exactly():
    data = site()
    stats, noise = real_statistics(data, RunConfig(image_size=16), seed=0)
    assert noise == {} and stats["radiomic"].count == 60
    encoded = stats_to_arrays(stats)
    back = stats_from_arrays(encoded["arrays"], encoded["counts"])
    assert np.allclose(back["radiomic"].cov, stats["radiomic"].cov)
    parts = [feature_stats(np.random.default_rng(i).normal(size=(20 + i, 4))) for i in range(3)]
    assert pool_stats(parts).count == 63


def test_noised_statistics_report_their_epsilon():
    stats, noise = real_statistics(site(), RunConfig(image_size=16, fid_stats_noise=2.0), 0)
    assert noise["stats-epsilon"] == pytest.approx(2.0)
    assert np.isfinite(stats["radiomic"].cov).all()


def test_site_evaluation_gives_all_site_metrics():
    config = RunConfig(image_size=16, base_channels=8, latent_dim=8, eval_samples=30,
                       tstr_steps=5)
    torch.manual_seed(0)
    weights = pair_state(*build_models(config))
    train, holdout = split_holdout(site(), 0.3, 0)
    metrics = evaluate_generator(weights, config, train, holdout, seed=1)
    assert set(metrics) == {"precision", "recall", "density", "coverage", "eval-examples",
                            "tstr-accuracy", "trtr-accuracy"}
    assert all(0 <= metrics[k] <= 1 for k in ("precision", "recall", "coverage"))
    assert evaluate_generator(weights, config, train, split_holdout(site(), 0.0, 0)[1], 1) == {}
    # the real-data reference is the same in every round (another round seed), not redrawn
    _REAL_CACHE.clear()
    again = evaluate_generator(weights, config, train, holdout, seed=2)
    assert again["trtr-accuracy"] == metrics["trtr-accuracy"]


def test_site_evaluation_runs_on_the_run_device_and_embeds_the_holdout_once(monkeypatch):
    import client.site_evaluation as site_evaluation

    config = RunConfig(image_size=16, base_channels=8, latent_dim=8, eval_samples=30,
                       tstr_steps=5, device="cpu")
    torch.manual_seed(0)
    weights = pair_state(*build_models(config))
    train, holdout = split_holdout(site(seed=4), 0.3, 0)
    asked, embedded, trained = [], [], []
    monkeypatch.setattr(site_evaluation, "resolve_device",
                        lambda name: asked.append(name) or torch.device("cpu"))
    real_features, real_train = site_evaluation.random_features, site_evaluation.train_classifier
    monkeypatch.setattr(site_evaluation, "random_features", lambda images, device: (
        embedded.append((len(images), device)) or real_features(images, device)))
    monkeypatch.setattr(site_evaluation, "train_classifier", lambda *a, device, **k: (
        trained.append(device) or real_train(*a, device=device, **k)))
    _REAL_CACHE.clear()
    first = evaluate_generator(weights, config, train, holdout, seed=1)
    second = evaluate_generator(weights, config, train, holdout, seed=2)
    assert asked == ["cpu", "cpu"]
    # every model and embedding on the resolved device: TSTR twice, TRTR once
    cpu = torch.device("cpu")
    assert {d for _, d in embedded} == {cpu} and trained == [cpu] * 3
    # the held-out images are embedded in the first round only; the fakes in every round
    assert [n for n, _ in embedded] == [len(holdout), 30, 30]
    assert first["trtr-accuracy"] == second["trtr-accuracy"]
    _REAL_CACHE.clear()  # computed afresh, the same figures
    assert evaluate_generator(weights, config, train, holdout, seed=2) == second


def test_site_metrics_are_weighted_by_holdout_size():
    merged = weighted_site_metrics([{"precision": 1.0, "eval-examples": 30},
                                    {"precision": 0.0, "eval-examples": 10, "recall": 0.5}])
    assert merged == {"precision": 0.75, "recall": 0.5}
