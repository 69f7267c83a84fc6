"""Global quality of the shared generator, without a single real image on the server.

- Real-data statistics come from the sites (feature mean/covariance/count per site, pooled
  exactly), asked for once per run and cached.
- The server generates images and computes the Frechet distances: FRD (radiomic features,
  always) and FID / Inception Score when a local Inception file is configured.
- Precision/recall/density/coverage and TSTR/TRTR are computed AT each site against its
  held-out images; the server averages them weighted by held-out size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from medgan_models.config import RunConfig
from medgan_models.metrics import (
    FeatureStats,
    feature_stats,
    frechet_distance,
    frechet_radiomic_distance,
    inception_features,
    inception_probabilities,
    inception_score,
    load_inception,
    pool_stats,
    radiomic_features,
)
from medgan_models.protocol import (ARRAYS, CONFIG, EVALUATE, METRICS, NUM_SITES, REAL_STATS,
                                    SITE)
from medgan_models.protocol import stats_from_arrays
from medgan_models.sampling import generator_from_state, sample_images

log = logging.getLogger("medgan.server")
SITE_METRICS = ("precision", "recall", "density", "coverage", "tstr-accuracy", "trtr-accuracy")
PRDC_REFERENCE = ("each site's held-out images, in a fixed random-CNN embedding, computed at "
                  "the site; weighted mean over sites")


def ask_sites(grid: Grid, nodes: Iterable[int], task: str, server_round: int,
              config: RunConfig, arrays: ArrayRecord | None = None) -> list[RecordDict]:
    """Send an evaluate message with ``task`` to ``nodes``; the replies of the sites that
    answered (a failed one is logged with its reason and left out)."""
    record = ConfigRecord({"task": task, "server-round": server_round,
                           NUM_SITES: config.num_sites})
    content = RecordDict({CONFIG: record, **({ARRAYS: arrays} if arrays else {})})
    messages = [Message(content, dst_node_id=n, message_type=MessageType.EVALUATE)
                for n in nodes]
    good = []
    for reply in grid.send_and_receive(messages, timeout=config.round_timeout):
        if reply.has_error():
            log.warning("%s: node %d failed: %s", task, reply.metadata.src_node_id,
                        reply.error.reason)
        elif reply.content[SITE].get("status") == "error":
            log.warning("%s: %s", task, reply.content[SITE]["message"])
        else:
            good.append(reply.content)
    return good


class FederatedEvaluator:
    """Asks the sites for what it needs and computes the round's quality metrics."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.real: dict[str, FeatureStats] | None = None
        self.class_counts: np.ndarray | None = None
        self.stats_epsilon: dict[str, float] = {}

    def _ask(self, grid: Grid, nodes: Iterable[int], task: str, server_round: int,
             arrays: ArrayRecord | None = None) -> list[RecordDict]:
        return ask_sites(grid, nodes, task, server_round, self.config, arrays)

    def collect_real_statistics(self, grid: Grid, nodes: list[int], server_round: int) -> None:
        """Pool the sites' real-feature statistics (exact pooled moments)."""
        replies = self._ask(grid, nodes, REAL_STATS, server_round)
        if not replies:
            raise RuntimeError("no site sent its real-data statistics; cannot evaluate")
        per_site = []
        for content in replies:
            arrays = {k: v.numpy() for k, v in content[ARRAYS].items()}
            per_site.append(stats_from_arrays(arrays, dict(content[METRICS])))
            site = str(content[SITE]["site-id"])
            self.stats_epsilon[site] = float(content[METRICS].get("stats-epsilon", 0.0))
        self.pool_real(per_site, [np.asarray(c[METRICS]["class-counts"]) for c in replies])

    def pool_real(self, per_site: list[dict[str, FeatureStats]],
                  class_counts: list[np.ndarray]) -> None:
        """Keep the exact pooled statistics of all sites' real images, and the class mix."""
        self.real = {name: pool_stats([s[name] for s in per_site]) for name in per_site[0]}
        self.class_counts = np.sum(class_counts, axis=0)

    def evaluate(self, grid: Grid, nodes: list[int], arrays: ArrayRecord,
                 weights: dict[str, torch.Tensor], server_round: int) -> dict[str, Any]:
        """All metrics of this round's aggregated generator."""
        if self.real is None:
            self.collect_real_statistics(grid, nodes, server_round)
        site_replies = self._ask(grid, nodes, EVALUATE, server_round, arrays)
        return self.metrics(weights, [dict(c[METRICS]) for c in site_replies],
                            [str(c[SITE]["site-id"]) for c in site_replies])

    def metrics(self, weights: dict[str, torch.Tensor], site_metrics: list[dict[str, float]],
                site_ids: list[str] | None = None) -> dict[str, Any]:
        """Server-side distances plus the sites' metrics, combined; with ``site_ids``, also
        each site's own figures under ``sites`` (which hospital's images are not covered)."""
        metrics: dict[str, Any] = self.server_side(weights)
        metrics.update(weighted_site_metrics(site_metrics))
        if metrics.get("trtr_accuracy"):
            metrics["tstr_over_trtr"] = metrics["tstr_accuracy"] / metrics["trtr_accuracy"]
        metrics["prdc_reference"] = PRDC_REFERENCE
        if site_ids is not None:
            metrics["sites"] = {
                site: {k.replace("-", "_"): float(m[k]) for k in (*SITE_METRICS, "eval-examples")
                       if k in m}
                for site, m in sorted(zip(site_ids, site_metrics, strict=True),
                                      key=lambda pair: pair[0])}
        return metrics

    def server_side(self, weights: dict[str, torch.Tensor]) -> dict[str, float]:
        """FRD (and FID, IS) of generated images against the pooled real statistics."""
        config = self.config
        generator = generator_from_state(weights, config)
        labels = None
        if config.conditional:
            share = self.class_counts / self.class_counts.sum()
            rng = np.random.default_rng(config.seed)
            labels = torch.from_numpy(rng.choice(len(share), config.eval_samples, p=share))
        fake = sample_images(generator, labels, config.eval_samples, seed=config.seed + 1).numpy()
        metrics = {"frd": frechet_radiomic_distance(self.real["radiomic"],
                                                    radiomic_features(fake))}
        if "inception" in self.real:
            detector = load_inception(config.inception_path)
            metrics["fid"] = frechet_distance(self.real["inception"],
                                              feature_stats(inception_features(detector, fake)))
            metrics["inception_score"] = inception_score(
                inception_probabilities(detector, fake))[0]
        return metrics


def weighted_site_metrics(site_metrics: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each site metric weighted by the site's number of held-out images."""
    out = {}
    for key in SITE_METRICS:
        pairs = [(m[key], m.get("eval-examples", 1)) for m in site_metrics if key in m]
        if pairs:
            total = sum(w for _, w in pairs)
            out[key.replace("-", "_")] = sum(v * w for v, w in pairs) / total
    return out
