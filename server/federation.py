"""The round loop: send, validate, aggregate, record. Knows Flower only through the Grid.

Each round ends with a checkpoint, a sample grid, a ``metrics.jsonl`` line and a fresh
``summary.json``, in that order, so a crash loses at most the round in flight and
``resume`` continues from the last checkpoint (the sites' ledgers continue epsilon).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord
from flwr.serverapp import Grid

from medgan_models.config import AUTO_SITES, RunConfig
from medgan_models.networks import build_models
from medgan_models.sampling import class_labels, generator_from_state, sample_images, save_image_grid
from medgan_models.protocol import METRICS, NUM_SITES, SITE, SITE_INFO
from medgan_models.weights import GENERATOR_PREFIX, pair_state
from server.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from server.evaluation import FederatedEvaluator, ask_sites
from server.metrics_plot import METRICS_PLOT, plot_metrics
from server.run_records import RunRecorder, round_record
from server.server_optimizer import (ServerOptimizer, ema_decay, ema_update,
                                     make_server_optimizer)
from server.site_codes import (SiteCodeConflict, count_site_codes, take_site_rows,
                               upgrade_site_examples)
from server.stop_request import stop_reason
from server.strategy import DPGanFedAvg, RoundReport

log = logging.getLogger("medgan.server")
SAMPLES_PER_CLASS = 32
GRID_COLUMNS = 8


@dataclass
class RunState:
    """Where a run stands between rounds (restored from a checkpoint on resume)."""

    next_round: int
    weights: dict[str, torch.Tensor]
    site_epsilons: dict[str, float]
    excluded_sites: set[str]
    seconds: float
    generator_ema: dict[str, np.ndarray] | None = None
    server_state: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def release_weights(self) -> dict[str, torch.Tensor]:
        """The weights with the averaged generator in place (when averaging)."""
        ema = {k: torch.from_numpy(v) for k, v in (self.generator_ema or {}).items()}
        return {**self.weights, **ema}


def initial_state(config: RunConfig) -> RunState:
    """Fresh models (seeded), or the last checkpoint of ``config.resume``."""
    if config.resume:
        path = latest_checkpoint(Path(config.resume))
        if path is None:
            raise FileNotFoundError(f"--resume {config.resume}: no checkpoints/round_*.pt there")
        ckpt = load_checkpoint(path)
        log.info("resuming from %s (round %d done)", path, ckpt.round)
        classes = config.num_classes if config.conditional else 1
        ema = upgrade_site_examples(ckpt.generator_ema, classes)
        server_state = {name: upgrade_site_examples(part, classes)
                        for name, part in ckpt.server_state.items()}
        return RunState(ckpt.round + 1, upgrade_site_examples(ckpt.weights, classes),
                        dict(ckpt.site_epsilons), set(ckpt.excluded_sites), ckpt.seconds,
                        {k: v.numpy() for k, v in ema.items()} or None,
                        {name: {k: v.numpy() for k, v in part.items()}
                         for name, part in server_state.items()})
    torch.manual_seed(config.seed)
    generator, discriminator = build_models(config)
    return RunState(1, pair_state(generator, discriminator), {}, set(), 0.0)


class Laps:
    """Wall time of the consecutive phases of a round."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        """Close the phase ``name`` (seconds since the previous lap)."""
        now = time.perf_counter()
        self.seconds[f"{name}_s"] = round(now - self._last, 4)
        self._last = now


def training_time(report: RoundReport) -> dict[str, float]:
    """Wall time covered by the sites' local training (union of their intervals) and its sum."""
    spans = sorted((r.metrics["train-start"], r.metrics["train-end"]) for r in report.trained
                   if "train-start" in r.metrics and "train-end" in r.metrics)
    covered, end = 0.0, float("-inf")
    for start, stop in spans:
        covered += max(0.0, stop - max(start, end))
        end = max(end, stop)
    return {"local_training_s": round(covered, 4),
            "local_training_sum_s": round(sum(b - a for a, b in spans), 4)}


def wait_for_sites(grid: Grid, strategy: DPGanFedAvg, min_sites: int, timeout: float) -> bool:
    """Wait (up to ``timeout`` s) until ``min_sites`` eligible sites are connected."""
    deadline = time.monotonic() + timeout
    while (found := len(strategy.eligible_nodes(grid))) < min_sites:
        if stop_reason():
            return False  # the run is being stopped: waiting longer helps no one
        if strategy.excluded_nodes and found + len(strategy.excluded_nodes) >= min_sites:
            return False  # enough sites are connected, but too many exhausted their budget
        if time.monotonic() > deadline:
            return False
        log.info("waiting for sites: %d connected and eligible, %d needed", found, min_sites)
        time.sleep(1.0)
    return True


def write_sample_grid(weights: dict[str, torch.Tensor], config: RunConfig, path: Path) -> Path:
    """Samples of the aggregated generator from FIXED noise, one block per class; a
    site-conditional generator draws each image's site as when sampling (seeded, in proportion
    to the sites' images of its class: a site's code is not asked for a class it lacks)."""
    generator = generator_from_state(weights, config)
    per_class = SAMPLES_PER_CLASS if config.conditional else 64
    labels = class_labels(config.num_classes, per_class)
    count = len(labels) if labels is not None else per_class
    images = sample_images(generator, labels, count, seed=config.seed)
    return save_image_grid(images, path, columns=GRID_COLUMNS, group_size=per_class)


def resolve_num_sites(config: RunConfig, grid: Grid, strategy: DPGanFedAvg,
                      progress: Callable[[str], None]) -> RunConfig:
    """``config`` with num-sites "auto" replaced: a resumed run's own count; else the count
    of the sites connected now (after waiting for min-sites), from their node configs."""
    if config.num_sites != AUTO_SITES:
        return config
    if config.resume and (path := latest_checkpoint(Path(config.resume))) is not None:
        saved = load_checkpoint(path).run_config.get("num-sites", 0)  # older runs: none
        return config.replace(num_sites=int(saved))
    nodes = (strategy.eligible_nodes(grid)
             if wait_for_sites(grid, strategy, config.min_sites, config.round_timeout) else [])
    replies = ask_sites(grid, nodes, SITE_INFO, 0, config)
    count, line = count_site_codes([dict(r[METRICS]) for r in replies],
                                   [str(r[SITE]["site-id"]) for r in replies])
    progress(line)
    return config.replace(num_sites=count)


def run_federation(grid: Grid, config: RunConfig, run_dir: Path,
                   progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run rounds ``next_round..num_rounds``; return the final summary."""
    strategy = DPGanFedAvg(config.min_sites, config.aggregation, config.trim_fraction,
                           config.max_update_norm)
    config = resolve_num_sites(config, grid, strategy, progress)
    state = initial_state(config)
    recorder = RunRecorder(run_dir, resume_after=state.next_round - 1 if config.resume else None)
    strategy.excluded_sites = set(state.excluded_sites)
    arrays = ArrayRecord(state.weights)
    evaluator = FederatedEvaluator(config)
    optimizer = make_server_optimizer(config)
    optimizer.state = state.server_state
    site_owned = build_models(config)[0].site_owned()  # what each site's reply decides
    stopped, checkpoint, started = "completed", None, time.perf_counter()
    elapsed = state.seconds
    for server_round in range(state.next_round, config.num_rounds + 1):
        t0 = time.perf_counter()
        ready = wait_for_sites(grid, strategy, config.min_sites, config.round_timeout)
        if reason := stop_reason():  # Ctrl-C, or the simulation engine stopped under us
            stopped = f"stopped before round {server_round}: {reason}"
            break
        if not ready:
            stopped = (f"stopped before round {server_round}: fewer than min-sites "
                       f"({config.min_sites}) connected sites can still train")
            break
        laps = Laps()
        messages = list(strategy.configure_train(server_round, arrays,
                                                 ConfigRecord({NUM_SITES: config.num_sites}), grid))
        replies = grid.send_and_receive(messages, timeout=config.round_timeout)
        laps.lap("communicate")
        aggregated, _ = strategy.aggregate_train(server_round, replies, reference=arrays,
                                                 sent_to=[m.metadata.dst_node_id for m in messages])
        laps.lap("aggregate")
        report = strategy.last_report
        for reply in report.replies:
            state.site_epsilons[reply.site_id] = reply.metrics["epsilon"]
        if aggregated is None:
            stopped = _no_training_reason(report, server_round, config.min_sites)
            recorder.append(round_record(report, state.site_epsilons, config.delta,
                                         strategy.excluded_sites, 0.0, ""))
            break
        arrays = server_update(optimizer, arrays, aggregated)
        if config.site_conditional:
            try:
                arrays = take_site_rows(arrays, report.trained, config.num_sites, site_owned)
            except SiteCodeConflict as conflict:  # a deployment error: stop, keep what is saved
                stopped = f"stopped at round {server_round}: {conflict}"
                break
        state.weights = weights = arrays.to_torch_state_dict()
        if config.generator_ema > 0:
            generator = {k: v.numpy() for k, v in weights.items()
                         if k.startswith(GENERATOR_PREFIX)}
            state.generator_ema = ema_update(state.generator_ema, generator,
                                             ema_decay(config.generator_ema, server_round))
        release = state.release_weights()
        elapsed = state.seconds + time.perf_counter() - started
        checkpoint = save_checkpoint(run_dir, Checkpoint(
            server_round, weights, config.to_mapping(), config.seed, state.site_epsilons,
            sorted(strategy.excluded_sites), elapsed,
            {k: torch.from_numpy(v) for k, v in (state.generator_ema or {}).items()},
            {name: {k: torch.from_numpy(np.asarray(v)) for k, v in part.items()}
             for name, part in optimizer.state.items()}))
        laps.lap("checkpoint")
        grid_path = write_sample_grid(release, config, run_dir / "samples"
                                      / f"round_{server_round:03d}.png")
        metrics = None
        if config.eval_every and (server_round % config.eval_every == 0
                                  or server_round == config.num_rounds):
            # only sites that just replied: a site that dropped out would stall evaluation too
            sent = arrays if state.generator_ema is None else ArrayRecord(release)
            metrics = evaluator.evaluate(grid, [r.node_id for r in report.trained], sent,
                                         release, server_round)
        laps.lap("evaluate")
        record = round_record(report, state.site_epsilons, config.delta, strategy.excluded_sites,
                              time.perf_counter() - t0, str(grid_path.relative_to(run_dir)))
        record["timing"] = {**laps.seconds, **training_time(report)}
        if metrics is not None:
            record["metrics"] = metrics
            record["stats_epsilon"] = evaluator.stats_epsilon
        recorder.append(record)
        recorder.write_summary(recorder.summary(config, elapsed, "running", checkpoint))
        if metrics is not None:
            plot_metrics(recorder.records, run_dir / METRICS_PLOT)
        progress(_progress_line(record, config.num_rounds))
    elapsed = state.seconds + time.perf_counter() - started
    summary = recorder.summary(config, elapsed, stopped, checkpoint)
    recorder.write_summary(summary)
    if stopped != "completed":
        progress(stopped)
    return summary


def server_update(optimizer: ServerOptimizer, current: ArrayRecord, aggregated: ArrayRecord
                  ) -> ArrayRecord:
    """The next global model: the aggregate, after the server optimiser's step (if any)."""
    if type(optimizer) is ServerOptimizer:
        return aggregated
    new = optimizer.step({k: v.numpy() for k, v in current.items()},
                         {k: v.numpy() for k, v in aggregated.items()})
    return ArrayRecord({k: Array(np.array(v, order="C")) for k, v in new.items()})  # keeps 0-d


def _no_training_reason(report: RoundReport, server_round: int, min_sites: int) -> str:
    """Why a round produced no update, in one line."""
    exhausted = [r.site_id for r in report.replies if r.status != "trained"]
    if report.replies and not report.trained:
        return (f"stopped at round {server_round}: no site can train within its max-epsilon "
                f"any more ({', '.join(exhausted)} exhausted)")
    problems = report.rejected + [f"{site} did not reply in time" for site in report.absent]
    problems += [f"{site} exhausted its budget" for site in exhausted]
    return (f"stopped at round {server_round}: {len(report.trained)} site(s) trained, fewer than "
            f"min-sites ({min_sites}): {'; '.join(problems) or 'no site replied'}")


def _progress_line(record: dict[str, Any], num_rounds: int) -> str:
    """``round 2/5 | 3/3 sites trained | epsilon site-0 4.31, ... | d 1.25 g 0.80 | 12.3 s | grid``."""
    clients = record["clients"]
    trained = [c for c in clients.values() if c["status"] == "trained"]
    d = sum(c.get("d_loss") or 0 for c in trained) / max(len(trained), 1)
    g = sum(c.get("g_loss") or 0 for c in trained) / max(len(trained), 1)
    if len(clients) <= 4:
        spent = ", ".join(f"{site} {c['epsilon']:.2f}" for site, c in clients.items())
    else:
        values = [c["epsilon"] for c in clients.values()]
        spent = f"{min(values):.2f}..{max(values):.2f} over {len(values)} sites"
    return (f"round {record['round']}/{num_rounds} | {len(trained)}/{len(clients)} sites trained"
            f" | epsilon {spent} (max {record['epsilon_max']:.2f}, delta {record['delta']:g})"
            f" | d_loss {d:.3f} g_loss {g:.3f} | {record['seconds']:.1f} s | {record['samples']}")
