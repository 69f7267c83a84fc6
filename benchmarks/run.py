"""Performance benchmark: prints a table and (``--json OUT``) writes the figures.

    python benchmarks/run.py [--quick] [--device cpu|cuda] [--json OUT.json]

Every ratio is measured in this run, on this machine. ``--quick`` finishes in about 6 minutes
on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))

from benchmarks.federation import bytes_per_round, default_round, sites_scaling  # noqa: E402
from benchmarks.throughput import (  # noqa: E402
    bare_opacus_seconds,
    seconds_per_step,
    nonprivate_seconds,
    ours_seconds,
)
from medgan_models.config import GRAD_SAMPLE_MODES, RunConfig  # noqa: E402

MODES = ("hooks", "functorch", "ghost")


def throughput_table(sizes: list[int], batch: int, steps: int, repeats: int,
                     device: torch.device) -> dict[str, dict[str, float | str]]:
    """Images/s per size: non-private and each DP gradient mode (or why it fails)."""
    table: dict[str, dict[str, float | str]] = {}
    for size in sizes:
        row: dict[str, float | str] = {}
        row["nonprivate"] = batch / seconds_per_step(nonprivate_seconds, repeats, size, batch,
                                                     steps, device)
        for mode in MODES:
            try:
                if mode in GRAD_SAMPLE_MODES:
                    step = seconds_per_step(ours_seconds, repeats, size, batch, steps, mode,
                                            device)
                else:  # not offered by medgan-fl: measured in the bare loop
                    step = seconds_per_step(bare_opacus_seconds, repeats, size, batch, steps,
                                            device, mode)
                row[mode] = batch / step
            except Exception as error:  # a mode Opacus cannot apply to this step
                row[mode] = f"fails: {type(error).__name__}: {str(error)[:80]}"
        table[str(size)] = row
        print(f"  {size}x{size}: " + ", ".join(
            f"{k} {v:.0f} img/s" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
            flush=True)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and sizes (~6 min)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    steps, repeats = (10, 2) if args.quick else (30, 3)
    sizes = [32] if args.quick else [32, 64]
    site_counts = [2, 8, 100] if args.quick else [2, 8, 32, 100]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"torch {torch.__version__}, device {device}, torch threads {torch.get_num_threads()}")

    print("1. local training throughput (batch 64)")
    throughput = throughput_table(sizes, 64, steps, repeats, device)
    working = [v for k, v in throughput["32"].items() if k in MODES and isinstance(v, float)]
    dp_ratio = throughput["32"]["nonprivate"] / max(working)

    print("2. our loop vs a bare Opacus loop (32x32, hooks)")
    ours = seconds_per_step(ours_seconds, repeats, 32, 64, steps, "hooks", device)
    bare = seconds_per_step(bare_opacus_seconds, repeats, 32, 64, steps, device)
    print(f"  ours {ours * 1000:.1f} ms/step, bare Opacus {bare * 1000:.1f} ms/step")

    print("3. a default federated round (3 sites, 32x32; rounds after the first)")
    round_info = default_round(rounds=2 if args.quick else 3, timeout=900)
    # Ghost clipping is measured in the bare loop only (medgan-fl's step does not route the loss
    # through Opacus' criterion wrapper); hooks and functorch in medgan-fl's own loop.
    print("  " + ", ".join(f"{k} {v:.3f}" for k, v in round_info.items()))
    print(f"   round time against virtual hospitals (16x16, 2 local steps): {site_counts}")
    scaling = sites_scaling(site_counts, rounds=1 if args.quick else 2, timeout=600)
    for row in scaling:
        print(f"  {row}")

    print("4. bytes per round per site (default 32x32 models)")
    traffic = bytes_per_round(RunConfig())
    print(f"  down {traffic['down'] / 2**20:.2f} MiB, up {traffic['up'] / 2**20:.2f} MiB")

    figures = {
        "device": str(device),
        "cpu_cores": os.cpu_count(),
        "throughput_img_per_s": throughput,
        "dp_over_nonprivate": dp_ratio,
        "loop_over_bare_opacus": ours / bare,
        "framework_fraction": round_info["framework_fraction"],
        "default_round": round_info,
        "sites_scaling": scaling,
        "max_sites_simulated": max((r["sites"] for r in scaling if r["ok"]), default=0),
        "bytes_per_round_per_site": traffic,
    }
    print("\nsummary")
    print(f"  DP / non-private step cost (32x32, best mode): {dp_ratio:.2f}x  (target <= 1.5x)")
    print(f"  our loop / bare Opacus loop:                   {ours / bare:.3f}x (target <= 1.05x)")
    print(f"  framework share of a default round:            "
          f"{round_info['framework_fraction']:.1%} (target < 10%)")
    print(f"  most virtual hospitals simulated:              {figures['max_sites_simulated']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
