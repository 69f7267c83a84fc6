"""The run folder's records: ``metrics.jsonl`` (a line per round) and ``summary.json``.

``metrics.jsonl``, one object per round:
  ``round``, ``clients`` {site-id: {``epsilon``, ``delta``, ``num_examples``, ``d_loss``,
  ``g_loss``, ``noise_multiplier``, ``sample_rate``, ``steps``, ``max_grad_norm``, ``status``}},
  ``epsilon_max`` (the released model's record-level epsilon: max over sites, parallel
  composition over disjoint data), ``delta``, ``excluded``, ``rejected`` (reasons), ``absent`` (sites that did not reply in time),
  ``seconds``, ``samples``, ``timing`` (seconds per phase: ``communicate_s`` (send, local
  training, receive), ``aggregate_s``, ``checkpoint_s``, ``evaluate_s``, ``local_training_s``
  (wall time covered by the sites' training), ``local_training_sum_s``); on evaluation rounds
  ``metrics`` (``frd``, ``precision``, ``recall``, ``density``, ``coverage``, ``tstr_accuracy``,
  ``trtr_accuracy``, ``tstr_over_trtr``, ``fid`` and ``inception_score`` with an Inception
  file, ``prdc_reference``) and ``stats_epsilon`` (per site, when real statistics are noised).
``summary.json``: ``rounds``, ``metrics`` (the last evaluation's), ``metrics_round``, ``epsilon_max``, ``delta``, ``accountant``, ``clients`` {site-id: {``epsilon``,
  ``num_examples``, ``rounds_trained``, ``excluded``}}, ``seconds``, ``final`` (the last round's
  mean losses), ``stopped``, ``samples``, ``checkpoint`` (relative paths), ``config``.
Lines are flushed as they are written and the summary is replaced atomically, so a crash
loses at most the round in flight.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from medgan_models.config import RunConfig
from server.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint
from server.strategy import RoundReport

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
_CLIENT_KEYS = ("epsilon", "delta", "num-examples", "d-loss", "g-loss", "noise-multiplier",
                "sample-rate", "steps", "max-grad-norm")


def _clean(value: float) -> float | None:
    """JSON has no NaN: a missing value becomes null."""
    return value if math.isfinite(value) else None


def round_record(report: RoundReport, site_epsilons: dict[str, float], delta: float,
                 excluded: set[str], seconds: float, samples: str) -> dict[str, Any]:
    """The ``metrics.jsonl`` object of one round."""
    clients = {}
    for reply in sorted(report.replies, key=lambda r: r.site_id):
        entry = {k.replace("-", "_"): _clean(reply.metrics[k]) for k in _CLIENT_KEYS
                 if k in reply.metrics}
        entry["num_examples"] = int(reply.metrics.get("num-examples", 0))
        entry["steps"] = int(reply.metrics.get("steps", 0))
        entry["status"] = reply.status
        clients[reply.site_id] = entry
    return {
        "round": report.round,
        "clients": clients,
        "epsilon_max": max(site_epsilons.values(), default=0.0),
        "delta": delta,
        "excluded": sorted(excluded),
        "rejected": report.rejected,
        "absent": report.absent,
        "seconds": round(seconds, 3),
        "samples": samples,
    }


class RunRecorder:
    """Appends round records and keeps ``summary.json`` current."""

    def __init__(self, run_dir: Path, resume_after: int | None = None) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = run_dir / METRICS_FILE
        self.records: list[dict[str, Any]] = []
        if resume_after is not None:  # keep the rounds the checkpoint covers, drop the rest
            self.records = [r for r in read_metrics(self.metrics_path)
                            if r["round"] <= resume_after]
        self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.metrics_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        os.replace(tmp, self.metrics_path)

    def append(self, record: dict[str, Any]) -> None:
        """Add one round's line, flushed to disk at once."""
        self.records.append(record)
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """Replace ``summary.json`` atomically."""
        path = self.run_dir / SUMMARY_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, path)
        return path

    def summary(self, config: RunConfig, seconds: float, stopped: str,
                checkpoint: Path | None) -> dict[str, Any]:
        """Summarise every round recorded so far."""
        clients: dict[str, dict[str, Any]] = {}
        for record in self.records:
            for site, entry in record["clients"].items():
                info = clients.setdefault(site, {"rounds_trained": 0})
                info["epsilon"] = entry.get("epsilon")
                info["num_examples"] = entry.get("num_examples")
                info["rounds_trained"] += entry.get("status") == "trained"
        last = self.records[-1] if self.records else {"clients": {}, "excluded": []}
        for site, info in clients.items():
            info["excluded"] = site in last["excluded"]
        trained = [c for c in last["clients"].values() if c.get("status") == "trained"]
        final = {key: _mean([c.get(key) for c in trained]) for key in ("d_loss", "g_loss")}
        evaluated = [r for r in self.records if "metrics" in r]
        return {
            "rounds": last.get("round", 0),
            "metrics": evaluated[-1]["metrics"] if evaluated else {},
            "metrics_round": evaluated[-1]["round"] if evaluated else None,
            "epsilon_max": max((c["epsilon"] or 0.0 for c in clients.values()), default=0.0),
            "delta": config.delta,
            "accountant": config.accountant,
            "clients": clients,
            "seconds": round(seconds, 2),
            "final": final,
            "stopped": stopped,
            "samples": last.get("samples"),
            "checkpoint": str(checkpoint.relative_to(self.run_dir)) if checkpoint else None,
            "config": config.to_mapping(),
        }


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a ``metrics.jsonl`` (a torn last line is ignored)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run folder's ``summary.json`` ({} when there is none yet)."""
    path = run_dir / SUMMARY_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def open_run(run_dir: Path, checkpoint: Path | None = None
             ) -> tuple[Path, Checkpoint, RunConfig, list[str]]:
    """A run folder's checkpoint (default: the last), its config and its sites, or a clear
    FileNotFoundError (for ``medgan evaluate`` / ``medgan audit``)."""
    path = checkpoint or latest_checkpoint(run_dir)
    if path is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoints/round_*.pt (is this a run folder?)")
    ckpt = load_checkpoint(path)
    site_ids = list(read_summary(run_dir).get("clients", {}))
    if not site_ids:
        raise FileNotFoundError(f"{run_dir}: summary.json lists no sites")
    return path, ckpt, RunConfig.from_mapping(ckpt.run_config), site_ids
