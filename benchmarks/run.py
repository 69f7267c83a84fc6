"""Performance benchmark: prints a table and (``--json OUT``) writes the figures.

    python benchmarks/run.py [--quick] [--device cpu|cuda] [--json OUT.json]

Every ratio is measured in this run, on this machine. ``--quick`` is meant to finish in under
5 minutes on 2 CPU cores (it prints its wall time at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))

from benchmarks.federation import bytes_per_round, default_round, sites_scaling  # noqa: E402
from benchmarks.throughput import (  # noqa: E402
    BareOpacusLoop,
    NonPrivateLoop,
    OurLoop,
    interleaved_step_seconds,
)
from medgan_models.config import GRAD_SAMPLE_MODES, RunConfig  # noqa: E402

DEFAULT_MODE = RunConfig().grad_sample_mode


def throughput_table(sizes: list[int], batch: int, steps: int, device: torch.device
                     ) -> dict[str, dict[str, float | str]]:
    """Images/s per size: non-private, each DP gradient mode in medgan-fl's loop (or why it
    fails), and a bare Opacus loop in the default mode; all timed round-robin in one go."""
    table: dict[str, dict[str, float | str]] = {}
    for size in sizes:
        loops = {"nonprivate": lambda: NonPrivateLoop(size, batch, device)}
        for mode in GRAD_SAMPLE_MODES:
            loops[mode] = lambda mode=mode: OurLoop(size, batch, device, mode)
        loops[f"bare_opacus_{DEFAULT_MODE}"] = lambda: BareOpacusLoop(size, batch, device,
                                                                      DEFAULT_MODE)
        seconds = interleaved_step_seconds(loops, steps, device)
        row = {k: batch / v if isinstance(v, float) else v for k, v in seconds.items()}
        table[str(size)] = row
        print(f"  {size}x{size}: " + ", ".join(
            f"{k} {v:.0f} img/s" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
            flush=True)
    return table


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, sizes and site "
                        "counts (under 5 min on 2 cores)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    steps = 20 if args.quick else 40
    sizes = [32] if args.quick else [32, 64]
    site_counts = [2, 100] if args.quick else [2, 8, 32, 100]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__}, device {device}, torch threads {torch.get_num_threads()}")

    print(f"1. local training throughput (batch 64; median of {steps} steps per loop, "
          "timed round-robin)")
    throughput = throughput_table(sizes, 64, steps, device)
    row32 = throughput["32"]
    working = {k: v for k, v in row32.items() if k in GRAD_SAMPLE_MODES and isinstance(v, float)}
    best_mode = max(working, key=working.get)
    dp_ratio = row32["nonprivate"] / working[best_mode]

    print(f"2. our loop vs a bare Opacus loop (32x32, {DEFAULT_MODE}, from the same timing)")
    bare = row32[f"bare_opacus_{DEFAULT_MODE}"]
    loop_ratio = bare / row32[DEFAULT_MODE]  # step time ours / step time bare
    print(f"  ours {64 / row32[DEFAULT_MODE] * 1000:.1f} ms/step, "
          f"bare Opacus {64 / bare * 1000:.1f} ms/step")

    print(f"  [{time.perf_counter() - started:.0f} s]", flush=True)
    print("3. a default federated round (3 sites, 32x32; rounds after the first)")
    round_info = default_round(rounds=2 if args.quick else 3, timeout=900)
    print("  " + ", ".join(f"{k} {v:.3f}" for k, v in round_info.items()))
    print(f"  [{time.perf_counter() - started:.0f} s]", flush=True)
    print(f"   round time against virtual hospitals (16x16, 2 local steps"
          f"{', cheap evaluation' if args.quick else ''}): {site_counts}")
    scaling = sites_scaling(site_counts, rounds=1 if args.quick else 2, timeout=600,
                            cheap_evaluation=args.quick)
    for row in scaling:
        print(f"  {row}")

    print(f"  [{time.perf_counter() - started:.0f} s]", flush=True)
    print("4. bytes per round per site (default 32x32 models)")
    traffic = bytes_per_round(RunConfig())
    print(f"  down {traffic['down'] / 2**20:.2f} MiB, up {traffic['up'] / 2**20:.2f} MiB")

    figures = {
        "device": str(device),
        "cpu_cores": os.cpu_count(),
        "throughput_img_per_s": throughput,
        "dp_over_nonprivate": dp_ratio,
        "dp_best_mode": best_mode,
        "loop_over_bare_opacus": loop_ratio,
        "framework_fraction": round_info["framework_fraction"],
        "default_round": round_info,
        "sites_scaling": scaling,
        "max_sites_simulated": max((r["sites"] for r in scaling if r["ok"]), default=0),
        "bytes_per_round_per_site": traffic,
    }
    print("\nsummary")
    print(f"  DP / non-private step cost (32x32, {best_mode}):{' ' * (11 - len(best_mode))}"
          f"{dp_ratio:.2f}x  (target <= 1.5x)")
    print(f"  our loop / bare Opacus loop:                   {loop_ratio:.3f}x (target <= 1.05x)")
    print(f"  framework share of a default round:            "
          f"{round_info['framework_fraction']:.1%} (target < 10%)")
    print(f"  most virtual hospitals simulated:              {figures['max_sites_simulated']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    print(f"benchmark wall time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
