"""Quality benchmark: what privacy and federation cost, at a fixed wall-time budget.

    python benchmarks/quality.py [--minutes 15] [--out DIR] [--json OUT.json] [--settings ...]
                                 [--seeds 0 1 2] [--rounds N] [--eval-every N | --evaluations N]
                                 [--set KEY=VALUE ...] [--device auto|cpu|cuda]

Three runs of ``medgan simulate`` with its defaults on the default phantom data at 32x32, each
given the same wall-time budget: ``federated_dp`` (3 non-IID sites: each its own scanner, and
labels split by Dirichlet(alpha = 1), epsilon 10 per site), ``centralized_dp`` (one site holding
exactly those three sites' images, pooled into one ``.npz``; epsilon 10) and ``nonprivate`` (the
3 federated sites with the privacy noise switched off: noise multiplier 1e-3 and clipping 1e4,
which makes DP-SGD plain SGD, and the mean embedding released with noise 1e-3). On request,
``centralized_nonprivate``: the pooled images at one site without privacy noise, the recipe's
ceiling; ``federated_dp_iid``: the pooled images split at random over 3 sites (each holds all
three scanners), under DP: the same federation without the sites' differences. ``--set``
measures a lever: run-config keys added to every setting (a setting's own keys win:
``nonprivate`` stays without noise). The number of rounds is chosen from a measured
training-step time so that each run fits its budget (or given: ``--rounds``); the privacy noise
is derived for exactly those rounds. ``--device auto`` (the default) trains on a GPU where one
is found, and then plans the rounds from the GPU's step time. Prints a table of the metrics of
``summary.json``, the ratios, and where each run's folder and sample grid are.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))

from client.data.sources import load_site_dataset  # noqa: E402
from client.dp_training import LocalTrainer, resolve_device  # noqa: E402
from client.embedding_release import make_release  # noqa: E402
from medgan_models.config import ConfigError, RunConfig, parse_overrides  # noqa: E402
from medgan_models.networks import build_models  # noqa: E402
from benchmarks.quality_results import (COLUMNS, METRICS, combine_seeds,  # noqa: E402
                                        combined, report)
from simulation.interrupts import run_forwarding_ctrl_c  # noqa: E402
from simulation.simulate import (available_memory, backend_config,  # noqa: E402
                                 sites_at_once)

ROUND_OVERHEAD = 1.3  # evaluation, start-up and framework time on top of training (measured)
ROUND_FIXED_S = 1.0  # each round's messages, aggregation and checkpoint (what a GPU round is)
# sites sharing one GPU at once: each takes the share simulation/simulate.py asks Ray for
GPU_SITES_AT_ONCE = round(1 / backend_config("cuda")["client_resources"]["num_gpus"])
TOTAL_SAMPLES = 6000
FEDERATED_SITES, ALPHA = 3, 1.0
POOLED_FILE = "pooled_sites.npz"  # the federated sites' images, for the centralized run

FEDERATED = {"sites": FEDERATED_SITES, "alpha": ALPHA,
             "samples-per-site": TOTAL_SAMPLES // FEDERATED_SITES}
NO_PRIVACY_NOISE = {"noise-multiplier": 1e-3, "max-grad-norm": 1e4, "accountant": "rdp",
                    "max-epsilon": 1e12, "target-epsilon": 1e12,  # DP-SGD made plain SGD
                    "mean-embedding-noise": 1e-3}  # and the mean embedding's release exact
SETTINGS: dict[str, dict[str, Any]] = {
    "federated_dp": FEDERATED,
    "centralized_dp": {"sites": 1},  # data: the pooled file, written by main()
    "nonprivate": {**FEDERATED, **NO_PRIVACY_NOISE},
    # not run by default: the recipe's ceiling (one site, all images, no noise)
    "centralized_nonprivate": {"sites": 1, **NO_PRIVACY_NOISE},
    # not run by default: the same federation with IID sites (the pooled images split at random)
    "federated_dp_iid": {"sites": FEDERATED_SITES, "alpha": 0.0},
}
DEFAULT_SETTINGS = ("federated_dp", "centralized_dp", "nonprivate")
POOLED_DATA = ("centralized_dp", "centralized_nonprivate", "federated_dp_iid")  # pooled file


def write_pooled_sites(path: Path, image_size: int = 32,
                       samples_per_site: int = TOTAL_SAMPLES // FEDERATED_SITES,
                       seed: int = 0) -> int:
    """Write the federated setting's sites' phantoms (each with its scanner; the split of run
    seed ``seed``) as one MedMNIST-style ``.npz`` (uint8 images, labels), so that the
    centralized run trains on the same images; returns how many."""
    sites = [load_site_dataset("phantom", i, FEDERATED_SITES, image_size, 1, alpha=ALPHA,
                               seed=seed, samples_per_site=samples_per_site)
             for i in range(FEDERATED_SITES)]
    images = np.concatenate([s.images[:, 0] for s in sites])
    labels = np.concatenate([s.labels for s in sites])
    pixels = np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
    np.savez_compressed(path, train_images=pixels, train_labels=labels[:, None])
    return len(labels)


def step_seconds(config: RunConfig, steps: int = 8, device: torch.device = torch.device("cpu"),
                 blocks: int = 3) -> float:
    """Seconds of one local training step (DP discriminator step + generator step) with
    ``config`` on ``device``; on CPU on one thread: each simulated site gets one core. The
    fastest of ``blocks`` medians of ``steps`` steps: a machine busy for a few seconds when
    the benchmark starts (just booted, or just installed) would otherwise shrink every plan."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        data = load_site_dataset("phantom", 0, 3, config.image_size, config.channels,
                                 samples_per_site=TOTAL_SAMPLES // 3)
        generator, discriminator = build_models(config)
        trainer = LocalTrainer(generator, discriminator, data, config, 1.0,
                               device, seed=0,
                               embedding=make_release(config, data))
        trainer.step()  # warm-up
        medians = []
        for _ in range(blocks):
            times = []
            for _ in range(steps):
                start = time.perf_counter()
                trainer.step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - start)
            medians.append(statistics.median(times))
        return min(medians)
    finally:
        torch.set_num_threads(threads)


def rounds_for_budget(seconds: float, sites: int, local_steps: int, step_s: float,
                      cores: int, gpu_sites: int = 0, memory: int | None = None) -> int:
    """Rounds whose local training and overhead fit ``seconds``: on the CPU's ``cores`` the
    sites train as the simulation runs them (:func:`sites_at_once` at a time, as ``memory``
    allows, one thread each, in waves), on a GPU ``gpu_sites`` at a time (``gpu_sites`` > 0)."""
    if gpu_sites:
        site_steps = math.ceil(sites / gpu_sites)
    else:  # per step: waves x the slowdown of more sites than cores sharing them
        at_once = sites_at_once(sites, cores, memory)
        site_steps = math.ceil(sites / at_once) * max(1.0, at_once / max(1, cores))
    per_round = local_steps * step_s * site_steps * ROUND_OVERHEAD + ROUND_FIXED_S
    return max(1, int(seconds / per_round))


def run_setting(name: str, rounds: int, out: Path, base: dict[str, Any] | None = None,
                **extra: Any) -> dict[str, Any]:
    """One ``medgan simulate`` of a setting (``base``: run-config keys under the setting's
    own, e.g. ``--set``; ``extra``: more, over them); its summary's metrics and the wall time
    it took."""
    setting = {**(base or {}), **SETTINGS[name], **extra}
    sites = setting.pop("sites")
    settings = {"num-rounds": rounds, "eval-every": rounds, **setting}
    toml = out.with_suffix(".toml")
    toml.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    start = time.perf_counter()
    command = [sys.executable, "-m", "simulation.cli", "simulate", "--sites", str(sites),
               "--config", str(toml), "--out", str(out)]
    if code := run_forwarding_ctrl_c(command, cwd=Path(__file__).parents[1]):
        raise subprocess.CalledProcessError(code, command)
    summary = json.loads((out / "summary.json").read_text())
    missed, reason = missed_rounds(out)
    if missed or summary["rounds"] < rounds:
        print(f"WARNING: {name} ran {summary['rounds']} of {rounds} rounds, {missed} of them "
              f"without every site{f' (first: {reason})' if reason else ''}: its figures "
              "are not the benchmark's (too little memory for the runs at once?)", flush=True)
    return {"rounds": summary["rounds"], "missed_rounds": missed,
            "seconds": time.perf_counter() - start,
            "epsilon_max": summary["epsilon_max"], "run": str(out),
            "samples": str(out / summary["samples"]),
            **{k: summary["metrics"].get(k) for k in METRICS}}


def missed_rounds(run_dir: Path) -> tuple[int, str]:
    """Rounds of a run in which a site's reply was rejected or missing (a Ray worker killed
    for memory, say), and the first such reason."""
    missed, first = 0, ""
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        problems = [*record.get("rejected", []),
                    *(f"{site} did not reply in time" for site in record.get("absent", []))]
        missed += bool(problems)
        first = first or (problems[0] if problems else "")
    return missed, first


def load_results(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """Earlier ``--json`` files (one per seed, say, run side by side or on other machines) as
    one result per setting: each setting's runs from every file, combined by
    :func:`combine_seeds`. A file that is not such a result, a run without its columns or a
    run given twice is a ValueError naming the file."""
    runs: dict[str, list[dict[str, Any]]] = {}
    seen: dict[str, Path] = {}
    for path in paths:
        try:
            data = json.loads(path.read_text())
            rows = {name: result.get("per_seed", [result]) for name, result in data.items()}
        except (OSError, ValueError, AttributeError) as error:
            raise ValueError(f"{path}: not a --json file of this benchmark ({error})") from None
        for name, setting_rows in rows.items():
            if name not in SETTINGS:
                raise ValueError(f"{path}: unknown setting '{name}' (known: {', '.join(SETTINGS)})")
            for row in setting_rows:
                missing = [k for k in ("run", *COLUMNS)
                           if not isinstance(row, dict) or k not in row]
                if missing:
                    raise ValueError(f"{path}: a run of {name} without {', '.join(missing)}")
                if row["run"] in seen:
                    raise ValueError(f"{path}: run {row['run']} is also in {seen[row['run']]}")
                seen[row["run"]] = path
                runs.setdefault(name, []).append(row)
    return {name: combine_seeds(runs[name]) for name in SETTINGS if name in runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="wall-time budget per run")
    parser.add_argument("--out", type=Path, default=Path("runs") / time.strftime(
        "quality-%Y%m%d-%H%M%S"), help="where the three run folders are kept")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS),
                        default=list(DEFAULT_SETTINGS),
                        help="run these (default: the first three; centralized_nonprivate is "
                             "the recipe's ceiling: one site, all images, no privacy noise; "
                             "federated_dp_iid the federation without the sites' differences: "
                             "the same images split at random over 3 sites)")
    parser.add_argument("--rounds", type=int,
                        help="this many rounds per run instead of what the budget allows")
    evaluations = parser.add_mutually_exclusive_group()
    evaluations.add_argument("--eval-every", type=int,
                             help="evaluate every N rounds (a learning curve in each run's "
                                  "metrics.jsonl; default: only at the end)")
    evaluations.add_argument("--evaluations", type=int,
                             help="evaluate N times, evenly over each run's rounds (with "
                                  "--minutes, where the rounds are not known beforehand)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="run every setting once per seed (data split and initialisation) "
                             "and report the mean and standard deviation (default: 0)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="run-config keys for every run, e.g. --set site-batchnorm=true "
                             "(a setting's own keys win: nonprivate keeps its noise off)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the sites train (auto: a GPU where one is found)")
    parser.add_argument("--combine", nargs="+", type=Path, metavar="JSON",
                        help="run nothing: print the table of earlier --json files (one per "
                             "seed, say), each setting's mean and spread over their runs")
    args = parser.parse_args(argv)
    if args.combine:
        try:
            results = load_results(args.combine)
        except ValueError as error:
            parser.error(str(error))
        return report(results, args.json)
    try:
        overrides = parse_overrides(args.set)
    except ConfigError as error:
        parser.error(str(error))
    defaults = RunConfig.from_mapping(overrides)
    try:
        device = resolve_device(args.device)
    except RuntimeError as error:
        parser.error(str(error))
    step_s = step_seconds(defaults, device=device)
    cores = os.cpu_count() or 1
    # on a GPU several sites train at once (GPU_SITES_AT_ONCE); their steps overlap
    # (H100: a 3-site round of 20 steps took 1.7 s, one site's steps 0.7 s)
    gpu_sites = 0 if device.type == "cpu" else GPU_SITES_AT_ONCE
    print(f"budget {args.minutes:g} min per run on {cores} cores"
          + (f" and {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")
          + f"; one training step {step_s * 1000:.0f} ms (32x32, batch {defaults.batch_size}, "
          + ("one core)" if device.type == "cpu" else "the GPU)")
          + (f"; with {', '.join(args.set)}" if args.set else ""), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.settings}
    for seed in args.seeds:
        # one seed keeps the plain layout (out/<setting>); several get out/seed-<n>/<setting>
        out = args.out if len(args.seeds) == 1 else args.out / f"seed-{seed}"
        out.mkdir(parents=True, exist_ok=True)
        extra: dict[str, dict[str, Any]] = {
            name: {"seed": seed, "device": args.device,
                   **({"eval-every": args.eval_every} if args.eval_every else {})}
            for name in args.settings}
        if any(name in POOLED_DATA for name in args.settings):
            pooled = out / POOLED_FILE
            count = write_pooled_sites(pooled, seed=seed)
            print(f"pooled the federated sites' {count} images into {pooled}")
            for name in set(POOLED_DATA) & set(args.settings):
                extra[name]["data"] = str(pooled.resolve())
        for name in args.settings:
            rounds = args.rounds or rounds_for_budget(args.minutes * 60, SETTINGS[name]["sites"],
                                                      defaults.local_steps, step_s, cores,
                                                      gpu_sites, available_memory())
            if args.evaluations:
                extra[name]["eval-every"] = max(1, math.ceil(rounds / args.evaluations))
            print(f"== {name}, seed {seed}: {rounds} rounds x {defaults.local_steps} steps",
                  flush=True)
            try:
                runs[name].append(run_setting(name, rounds, out / name, overrides, **extra[name]))
            except KeyboardInterrupt:
                print(f"interrupted: {out / name} keeps its finished rounds (medgan simulate "
                      f"--resume {out / name}); the table has the runs that ended", flush=True)
                if any(runs.values()):
                    report(combined(runs), args.json)
                return 130
    return report(combined(runs), args.json)


if __name__ == "__main__":
    sys.exit(main())
