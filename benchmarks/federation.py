"""Federated rounds: where a round's wall time goes, scaling with sites, bytes on the wire."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from medgan_models.config import RunConfig
from medgan_models.networks import build_models
from medgan_models.weights import pair_state


class PeakMemory:
    """Samples the resident memory of a process and all its descendants (Ray workers too)."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]
                            if p.is_running())
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_simulation(args: list[str], out: Path, timeout: float) -> dict[str, Any]:
    """``medgan simulate ARGS --out OUT`` in a child process; wall time, peak memory, records."""
    command = [sys.executable, "-m", "simulation.cli", "simulate", *args, "--out", str(out)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=Path(__file__).parents[1])
    with PeakMemory(process.pid) as memory:
        output, _ = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"simulate {' '.join(args)} failed:\n{output[-2000:]}")
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {"wall_s": time.perf_counter() - start, "peak_memory_mb": memory.peak / 2**20,
            "records": records}


def round_breakdown(records: list[dict[str, Any]]) -> dict[str, float]:
    """Mean seconds per phase over rounds after the first (the first warms the workers up)."""
    steady = records[1:] or records
    keys = ("seconds", "communicate_s", "aggregate_s", "checkpoint_s", "evaluate_s",
            "local_training_s")
    mean = {k: sum(r["seconds"] if k == "seconds" else r["timing"][k] for r in steady) / len(steady)
            for k in keys}
    framework = mean["seconds"] - mean["local_training_s"] - mean["evaluate_s"]
    mean["framework_s"] = framework
    mean["framework_fraction"] = framework / mean["seconds"]
    return mean


def default_round(rounds: int, timeout: float) -> dict[str, Any]:
    """A default ``medgan simulate`` (3 sites, 32x32), ``rounds`` rounds."""
    with tempfile.TemporaryDirectory() as tmp:
        result = run_simulation(["--rounds", str(rounds), "--device", "cpu"], Path(tmp) / "run",
                                timeout)
    return {**round_breakdown(result["records"]), "peak_memory_mb": result["peak_memory_mb"]}


def sites_scaling(counts: list[int], rounds: int, timeout: float,
                  cheap_evaluation: bool = False) -> list[dict[str, Any]]:
    """Round time and peak memory against the number of virtual hospitals (16x16, tiny steps).

    ``cheap_evaluation``: every site still evaluates (FRD statistics, PRDC, TSTR) but on 40
    generated images and a 10-step classifier, so the round measures the federation more
    than the evaluation (``--quick``).
    """
    rows = []
    for sites in counts:
        with tempfile.TemporaryDirectory() as tmp:
            extra: list[str] = []
            if cheap_evaluation:
                config = Path(tmp) / "cheap-eval.toml"
                config.write_text("eval-samples = 40\ntstr-steps = 10\n")
                extra = ["--config", str(config)]
            try:
                result = run_simulation(
                    ["--sites", str(sites), "--rounds", str(rounds), "--image-size", "16",
                     "--local-steps", "2", "--batch-size", "16", "--samples-per-site", "48",
                     "--device", "cpu", *extra], Path(tmp) / "run", timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                rows.append({"sites": sites, "ok": False, "error": str(error)[-300:]})
                continue
        rows.append({"sites": sites, "ok": True, "round_s": result["records"][-1]["seconds"],
                     "wall_s": result["wall_s"], "peak_memory_mb": result["peak_memory_mb"],
                     "evaluation": "cheap" if cheap_evaluation else "default"})
    return rows


def bytes_per_round(config: RunConfig) -> dict[str, int]:
    """Bytes of weights each site receives and sends per round (float32 tensors)."""
    generator, discriminator = build_models(config)
    weights = sum(t.numel() * t.element_size() for t in pair_state(generator, discriminator).values())
    return {"down": weights, "up": weights, "total": 2 * weights}
