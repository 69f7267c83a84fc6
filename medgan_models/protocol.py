"""The message layout both sides agree on: record names and a site's round statuses."""

from __future__ import annotations

import numpy as np

ARRAYS = "arrays"  # ArrayRecord: generator + discriminator weights
METRICS = "metrics"  # MetricRecord: num-examples, epsilon, delta, losses, DP-SGD parameters
SITE = "site"  # ConfigRecord: site-id, status, message
CONFIG = "config"  # ConfigRecord sent by the server: server-round
SITE_CODE = "site-code"  # metric: a site's index into a site-conditional generator
CLASS_EXAMPLES = "class-examples"  # metrics class-examples.<c>: a site's (noisy) images per class

TRAINED = "trained"
BUDGET_EXHAUSTED = "budget-exhausted"
ERROR = "error"

# Evaluate messages carry a "task" in their config record:
REAL_STATS = "real-stats"  # reply: per-extractor feature statistics of the site's real images
EVALUATE = "evaluate"  # reply: the site's metrics of the sent generator (PRDC, TSTR/TRTR)
SITE_INFO = "site-info"  # reply: the site's code and partition count (for num-sites "auto")
NUM_SITES = "num-sites"  # config sent with every message: the run's resolved num-sites


def stats_to_arrays(stats: dict) -> dict:
    """``{extractor: FeatureStats}`` -> flat numpy arrays ``extractor.mean`` / ``extractor.cov``
    and counts ``extractor.count`` (for an ArrayRecord and a MetricRecord)."""
    arrays, counts = {}, {}
    for name, value in stats.items():
        arrays[f"{name}.mean"], arrays[f"{name}.cov"] = value.mean, value.cov
        counts[f"{name}.count"] = int(value.count)
    return {"arrays": arrays, "counts": counts}


def stats_from_arrays(arrays: dict, counts: dict) -> dict:
    """Inverse of :func:`stats_to_arrays`."""
    from medgan_models.metrics import FeatureStats

    names = {key.rsplit(".", 1)[0] for key in arrays}
    return {name: FeatureStats(int(counts[f"{name}.count"]), arrays[f"{name}.mean"],
                               arrays[f"{name}.cov"]) for name in names}


def class_examples_metrics(counts: np.ndarray) -> dict[str, float]:
    """Per-class image counts as metrics ``class-examples.<c>``."""
    return {f"{CLASS_EXAMPLES}.{c}": float(n) for c, n in enumerate(counts)}


def class_examples(metrics: dict, num_classes: int) -> np.ndarray | None:
    """The per-class counts of :func:`class_examples_metrics`; None unless all are there."""
    keys = [f"{CLASS_EXAMPLES}.{c}" for c in range(num_classes)]
    if not all(k in metrics for k in keys):
        return None
    return np.array([float(metrics[k]) for k in keys])
