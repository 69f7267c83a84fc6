"""``medgan evaluate``: recompute a run's quality metrics for any checkpoint, offline.

The simulated sites' data is on this machine, so each site's part is computed here with the
same functions a real site runs, and combined exactly as the server does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from client.holdout import split_holdout
from client.site import load_data, site_config
from client.site_evaluation import evaluate_generator, real_statistics
from client.training_round import round_seed
from medgan_models.config import RunConfig
from server.evaluation import FederatedEvaluator
from server.run_records import open_run


GENERATORS = ("released", "raw")


def evaluate_run(run: Path, checkpoint: Path | None = None, generator: str = "released",
                 eval_samples: int | None = None) -> dict[str, Any]:
    """The metrics of a checkpoint (default: the run's last), as the federation computes them.

    ``generator``: "released" scores what the run releases (the generator averaged over rounds
    when ``generator-ema`` is on), "raw" the round's aggregated generator itself.
    ``eval_samples`` scores that many generated images instead of the run's ``eval-samples``
    (coverage grows with it: compare figures only at the same number). Either choice writes
    its own file, beside the default one."""
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}, got '{generator}'")
    path, ckpt, config, site_ids = open_run(run, checkpoint)
    if eval_samples is not None:
        config = RunConfig.from_mapping({**config.to_mapping(), "eval-samples": eval_samples})
    weights = ckpt.release_weights if generator == "released" else ckpt.weights
    sites = len(site_ids)
    per_site_stats, class_counts, site_metrics, names = [], [], [], []
    for partition in range(sites):
        site_cfg, site = site_config(config.to_mapping(),
                                     {"partition-id": partition, "num-partitions": sites})
        train, holdout = split_holdout(load_data(site_cfg, site), config.holdout_fraction,
                                       config.seed)
        seed = round_seed(config.seed, ckpt.round, site.site_id)
        stats, _ = real_statistics(train, site_cfg, seed)
        per_site_stats.append(stats)
        class_counts.append(np.bincount(train.labels, minlength=max(config.num_classes, 1)))
        names.append(site.site_id)
        site_metrics.append(evaluate_generator(weights, site_cfg, train, holdout, seed,
                                               site.site_code(site_cfg)))
    evaluator = FederatedEvaluator(config)
    evaluator.pool_real(per_site_stats, class_counts)
    metrics = evaluator.metrics(weights, site_metrics, names)
    result = {"checkpoint": str(path), "round": ckpt.round, "generator": generator,
              "eval_samples": config.eval_samples, "metrics": metrics}
    variant = ("" if generator == "released" else f"_{generator}") + (
        "" if eval_samples is None else f"_n{config.eval_samples}")
    out = run / f"evaluation_round_{ckpt.round:03d}{variant}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return {**result, "written": str(out)}
