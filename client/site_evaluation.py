"""What a site computes about the shared generator with its own images; only numbers leave.

- ``real_statistics``: mean/covariance/count of the site's training-image features (radiomic,
  plus Inception when a local weights file is configured), optionally noised (Gaussian
  mechanism, ``fid-stats-noise`` = its epsilon), for the server's Frechet distances.
- ``evaluate_generator``: precision/recall/density/coverage of generated images against the
  site's held-out images (computed here, at the site, in a fixed random-CNN embedding), and
  utility: a small classifier trained on synthetic images and tested on the held-out images
  (TSTR) beside one trained on the site's real training images (TRTR). It runs on the site's
  training device (``device``: a GPU when there is one); what depends on the real images only
  (the held-out embedding, TRTR) is computed once per process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from client.data import SiteData
from client.dp_training import resolve_device
from medgan_models.config import RunConfig
from medgan_models.metrics import (
    FeatureStats,
    accuracy,
    feature_stats,
    inception_features,
    load_inception,
    noisy_stats,
    prdc,
    radiomic_features,
    random_features,
    train_classifier,
)
from medgan_models.protocol import stats_to_arrays
from medgan_models.sampling import generator_from_state, sample_images

PRDC_K = 5
STATS_CLIP_NORM = 100.0  # feature-vector L2 bound for noisy statistics (fixed, not data-derived)


def real_statistics(data: SiteData, config: RunConfig, seed: int
                    ) -> tuple[dict[str, FeatureStats], dict[str, float]]:
    """Feature statistics of the site's training images, per extractor; and the noise used."""
    features = {"radiomic": radiomic_features(data.images)}
    if config.inception_path:
        features["inception"] = inception_features(load_inception(config.inception_path),
                                                   data.images)
    stats, report = {}, {}
    rng = np.random.default_rng(seed)
    for name, values in features.items():
        if config.fid_stats_noise > 0:
            epsilon = config.fid_stats_noise / len(features)  # split over the extractors
            stats[name], info = noisy_stats(values, epsilon, config.delta, STATS_CLIP_NORM, rng)
            report["stats-epsilon"] = report.get("stats-epsilon", 0.0) + info["epsilon"]
        else:
            stats[name] = feature_stats(values)
    return stats, report


def real_statistics_record(data: SiteData, config: RunConfig, seed: int
                           ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """:func:`real_statistics` as message payload: feature arrays, and counts/noise numbers
    (with the class counts, so that the server generates the same class mix)."""
    stats, noise = real_statistics(data, config, seed)
    encoded = stats_to_arrays(stats)
    counts = np.bincount(data.labels, minlength=max(config.num_classes, 1))
    return encoded["arrays"], {**encoded["counts"], **noise,
                               "class-counts": [int(c) for c in counts]}


def evaluate_generator(weights: dict[str, torch.Tensor], config: RunConfig, train: SiteData,
                       holdout: SiteData, seed: int, site_code: int | None = None
                       ) -> dict[str, float]:
    """PRDC against the held-out images and TSTR/TRTR accuracies (empty if no holdout), on
    ``config.device``. A site-conditional generator is asked for this site's images
    (``site_code``)."""
    if len(holdout) <= PRDC_K:
        return {}
    device = resolve_device(config.device)
    generator = generator_from_state(weights, config)
    rng = np.random.default_rng(seed)
    labels = rng.choice(holdout.labels, size=config.eval_samples)  # the site's class mix
    sites = (torch.full((config.eval_samples,), site_code) if site_code is not None else None)
    fake = sample_images(generator, torch.from_numpy(labels) if config.conditional else None,
                         config.eval_samples, seed=seed, device=device, sites=sites).numpy()
    reference = _once(("holdout-features", str(device)), (holdout,),
                      lambda: random_features(holdout.images, device))
    scores = prdc(reference, random_features(fake, device), k=PRDC_K)
    metrics = {k: float(v) for k, v in scores.items()}
    metrics["eval-examples"] = len(holdout)
    if config.conditional and config.tstr_steps > 0 and len(np.unique(holdout.labels)) > 1:
        synthetic = train_classifier(fake, labels, config.num_classes, config.tstr_steps,
                                     seed=seed, device=device)
        metrics["tstr-accuracy"] = accuracy(synthetic, holdout.images, holdout.labels)
        # the reference: seeded by the run's seed, not the round's (the same every round)
        metrics["trtr-accuracy"] = _once(
            ("trtr", config.num_classes, config.tstr_steps, config.seed, str(device)),
            (train, holdout),
            lambda: accuracy(train_classifier(train.images, train.labels, config.num_classes,
                                              config.tstr_steps, seed=config.seed,
                                              device=device),
                             holdout.images, holdout.labels))
    return metrics


def _once(key: tuple, data: tuple[SiteData, ...], compute: Callable[[], Any]) -> Any:
    """``compute()``, once per process for ``key`` and these very data sets (rounds reuse
    the value; the cache holds the data sets, so their ids cannot be reused meanwhile)."""
    full_key = (*key, *(id(d) for d in data))
    if full_key not in _REAL_CACHE:
        _REAL_CACHE[full_key] = (data, compute())
    return _REAL_CACHE[full_key][1]


_REAL_CACHE: dict[tuple, tuple[tuple[SiteData, ...], Any]] = {}
