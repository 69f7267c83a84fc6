"""Quality benchmark: what privacy and federation cost, at a fixed wall-time budget.

    python benchmarks/quality.py [--minutes 15] [--json OUT.json]

Three runs on the default phantom data at 32x32, each given the same wall-time budget:
``federated_dp`` (3 non-IID sites, alpha 0.5, epsilon 10 per site), ``centralized_dp`` (one
site holding all the data, epsilon 10) and ``nonprivate`` (the 3 federated sites with the
privacy noise switched off: noise multiplier 1e-3 and clipping 1e4, which makes DP-SGD plain
SGD). The number of rounds is chosen from a measured step time so that each run fits its budget;
the privacy noise is derived for exactly those rounds. Prints a table of the metrics of
``summary.json`` and the ratios, and writes the sample grids' paths.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))

from benchmarks.throughput import ours_seconds  # noqa: E402

METRICS = ("frd", "precision", "recall", "density", "coverage", "tstr_accuracy",
           "trtr_accuracy", "tstr_over_trtr")
LOCAL_STEPS = 40
EVAL_OVERHEAD = 1.35  # evaluation, start-up and framework time on top of training (measured)

SETTINGS: dict[str, dict[str, Any]] = {
    "federated_dp": {"sites": 3, "alpha": 0.5, "samples-per-site": 2000},
    "centralized_dp": {"sites": 1, "samples-per-site": 6000},
    "nonprivate": {"sites": 3, "alpha": 0.5, "samples-per-site": 2000,
                   "noise-multiplier": 1e-3, "max-grad-norm": 1e4, "accountant": "rdp",
                   "max-epsilon": 1e12, "target-epsilon": 1e12},
}


def rounds_for_budget(seconds: float, sites: int, step_seconds: float, cores: int) -> int:
    """Rounds whose local training (sites sharing ``cores``) fits ``seconds`` with overhead."""
    per_round = LOCAL_STEPS * step_seconds * max(1.0, sites / cores) * EVAL_OVERHEAD
    return max(1, int(seconds / per_round))


def run_setting(name: str, minutes: float, step_seconds: float, out_root: Path) -> dict[str, Any]:
    """One ``medgan simulate`` of a setting; its summary and the wall time it took."""
    setting = dict(SETTINGS[name])
    sites = setting.pop("sites")
    cores = max(1, torch.get_num_threads())
    rounds = rounds_for_budget(minutes * 60, sites, step_seconds, cores)
    settings = {"num-rounds": rounds, "local-steps": LOCAL_STEPS, "target-epsilon": 10.0,
                "max-epsilon": 10.0, "eval-every": max(1, rounds), **setting}
    toml = out_root / f"{name}.toml"
    toml.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    out = out_root / name
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "simulation.cli", "simulate", "--sites", str(sites),
                    "--config", str(toml), "--out", str(out), "--device", "cpu"],
                   check=True, cwd=Path(__file__).parents[1])
    summary = json.loads((out / "summary.json").read_text())
    return {"rounds": rounds, "seconds": time.perf_counter() - start,
            "epsilon_max": summary["epsilon_max"], "samples": str(out / summary["samples"]),
            **{k: summary["metrics"].get(k) for k in METRICS}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="wall-time budget per run")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="keep the run folders here")
    args = parser.parse_args(argv)
    step_seconds = min(ours_seconds(32, 64, 5, "hooks", torch.device("cpu")) / 5 for _ in range(2))
    print(f"budget {args.minutes:g} min per run; measured DP step {step_seconds * 1000:.0f} ms "
          f"(32x32, batch 64)", flush=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for name in SETTINGS:
            print(f"== {name}", flush=True)
            results[name] = run_setting(name, args.minutes, step_seconds, root)
    header = f"{'':16s}" + "".join(f"{k:>15s}" for k in ("rounds", "seconds", "epsilon_max",
                                                          *METRICS))
    print(header)
    for name, row in results.items():
        cells = [row["rounds"], row["seconds"], row["epsilon_max"], *(row[k] for k in METRICS)]
        print(f"{name:16s}" + "".join(f"{c:15.3f}" if isinstance(c, float) else f"{c!s:>15s}"
                                      for c in cells))
    for label, a, b in (("cost of privacy (FRD dp / non-private)", "federated_dp", "nonprivate"),
                        ("cost of federation (FRD fed / central)", "federated_dp",
                         "centralized_dp")):
        if results[a]["frd"] and results[b]["frd"]:
            print(f"{label}: {results[a]['frd'] / results[b]['frd']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
