"""The ``medgan`` command line: simulate, generate, evaluate, audit and data inspect.

Settings come, lowest first, from the defaults (``RunConfig``), a ``--config`` TOML file with
the run-config keys, a resumed run's own checkpoint, and the flags given. Bad input ends with
one line naming the problem, not a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client.data import DataError
from medgan_models.config import LOSSES, ConfigError, RunConfig, parse_overrides
from server.checkpoint import latest_checkpoint, load_checkpoint
from server.run_records import read_summary

# flag -> run-config key
SIMULATE_FLAGS = {
    "rounds": "num-rounds", "image_size": "image-size", "delta": "delta", "alpha": "alpha",
    "data": "data", "out": "out-dir", "seed": "seed", "device": "device", "loss": "loss",
    "local_steps": "local-steps", "batch_size": "batch-size", "num_classes": "num-classes",
    "samples_per_site": "samples-per-site", "noise_multiplier": "noise-multiplier",
    "accountant": "accountant", "channels": "channels", "canaries": "canaries",
}


def _simulate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="run a federation of virtual hospitals on this machine",
                       description="Federated DP-GAN training on Flower's simulation engine.")
    p.add_argument("--sites", type=int, default=None, help="virtual hospitals (default 3)")
    p.add_argument("--rounds", type=int, help="federated rounds")
    p.add_argument("--image-size", type=int, help="16, 32, 64 or 128")
    p.add_argument("--channels", type=int, help="1 (grayscale) or 3")
    p.add_argument("--epsilon", type=float,
                   help="each site's target AND maximum epsilon over the whole run")
    p.add_argument("--delta", type=float, help="DP delta (default 1e-5)")
    p.add_argument("--alpha", type=float,
                   help="Dirichlet concentration of a non-IID label split (omit for IID)")
    p.add_argument("--data", help="'phantom' (default), a PNG folder, a MedMNIST .npz, "
                                  "or DIR1,DIR2,... one per site")
    p.add_argument("--out", help="run folder (default runs/run-<time>)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--loss", choices=LOSSES)
    p.add_argument("--local-steps", type=int, help="DP discriminator steps per site per round")
    p.add_argument("--batch-size", type=int, help="expected Poisson batch size")
    p.add_argument("--num-classes", type=int, help="classes for conditioning (0/1: none)")
    p.add_argument("--samples-per-site", type=int, help="phantom images per site")
    p.add_argument("--noise-multiplier", type=float,
                   help="fix sigma instead of deriving it from --epsilon")
    p.add_argument("--accountant", choices=["prv", "rdp"])
    p.add_argument("--canaries", type=int, metavar="M",
                   help="add M canary images (each kept with probability 1/2) to site-0 for "
                        "the one-run privacy audit (medgan audit)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    p.add_argument("--config", metavar="FILE", help="TOML file with run-config keys")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="run-config keys, over --config and the flags above, e.g. "
                        "--set site-output-layer=false mean-embedding=0")
    p.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")
    p.add_argument("--ray-address", metavar="ADDRESS",
                   help="run the virtual hospitals on a running Ray cluster (HOST:PORT of its "
                        "head, or 'auto' on a machine of the cluster); default: $RAY_ADDRESS, "
                        "else a private Ray on this machine")


def _generate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="write synthetic images from a trained run")
    p.add_argument("--run", required=True, type=Path, help="run folder")
    p.add_argument("--n", type=int, default=64, help="number of images")
    p.add_argument("--out", required=True, type=Path,
                   help="folder for PNG or DICOM files, or a .npz file")
    p.add_argument("--format", choices=["png", "npz", "dicom"],
                   help="png (default), npz (default when --out ends in .npz), or dicom "
                        "(Secondary Capture files marked synthetic)")
    p.add_argument("--label", type=int, help="class to generate (conditional models)")
    p.add_argument("--site", type=int,
                   help="site whose look to generate (site-conditional models, num-sites > 1; "
                        "default: sites in proportion to their training-set sizes)")
    p.add_argument("--checkpoint", type=Path, help="a specific checkpoint (default: the last)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def _data_parser(sub: argparse._SubParsersAction) -> None:
    from simulation.data_inspect import add_inspect_arguments

    p = sub.add_parser("data", help="check a site's data before training")
    actions = p.add_subparsers(dest="data_command", required=True)
    inspect = actions.add_parser(
        "inspect", help="per-site report (files, skips, modalities, labels...) and a contact sheet",
        description="Report what a site's data holds and how it will be pre-processed. "
                    "Nothing leaves this machine.")
    add_inspect_arguments(inspect)


def _evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="recompute a run's quality metrics for a checkpoint")
    p.add_argument("--run", required=True, type=Path, help="run folder")
    p.add_argument("--checkpoint", type=Path, help="a specific checkpoint (default: the last)")
    p.add_argument("--generator", choices=("released", "raw"), default="released",
                   help="released: what the run releases (averaged over rounds when "
                        "generator-ema is on); raw: the round's aggregated generator")
    p.add_argument("--eval-samples", type=int, default=None,
                   help="generated images to score (default: the run's eval-samples; "
                        "coverage grows with it, so compare figures at the same number)")


def _audit_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="privacy audit of a trained run: accountant vs attacks",
                       description="Recompute each site's epsilon with two accountants, run "
                                   "membership-inference attacks on the released model, and "
                                   "write audit.json, roc.png and audit.md.")
    p.add_argument("--run", required=True, type=Path, help="run folder")
    p.add_argument("--checkpoint", type=Path, help="a specific checkpoint (default: the last)")
    p.add_argument("--state-dir", type=Path,
                   help="folder of the sites' privacy ledgers (default: the run's state-dir, "
                        "else <run>/site-state)")
    p.add_argument("--out", type=Path, help="folder for the report (default: the run folder)")
    p.add_argument("--queries-per-site", type=int, default=500,
                   help="members and non-members queried per site (default 500)")
    p.add_argument("--samples-per-class", type=int, default=2000,
                   help="generated samples the black-box attacker sees per class (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def build_parser() -> argparse.ArgumentParser:
    """The ``medgan`` argument parser."""
    parser = argparse.ArgumentParser(prog="medgan", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _simulate_parser(sub)
    _generate_parser(sub)
    _evaluate_parser(sub)
    _audit_parser(sub)
    _data_parser(sub)
    return parser


def simulate_config(args: argparse.Namespace) -> tuple[RunConfig, int]:
    """The run config and site count that ``medgan simulate ARGS`` means."""
    values: dict[str, Any] = {}
    sites = 3
    if args.resume:
        path = latest_checkpoint(Path(args.resume))
        if path is None:
            raise ConfigError(f"--resume {args.resume}: no checkpoints/round_*.pt in that folder")
        values.update(load_checkpoint(path).run_config)
        sites = len(read_summary(Path(args.resume)).get("clients", {})) or sites
    if args.config:
        try:
            file_values = tomllib.loads(Path(args.config).read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"--config {args.config}: {error}") from None
        sites = int(file_values.pop("sites", sites))
        values.update(file_values)
    for flag, key in SIMULATE_FLAGS.items():
        if getattr(args, flag) is not None:
            values[key] = getattr(args, flag)
    if args.epsilon is not None:
        values["target-epsilon"] = values["max-epsilon"] = args.epsilon
    values.update(parse_overrides(args.set))
    if args.resume:
        values["resume"] = values["out-dir"] = args.resume
    elif "out-dir" not in values:
        values["out-dir"] = f"runs/run-{dt.datetime.now():%Y%m%d-%H%M%S}"
    if args.sites is not None:
        sites = args.sites
    if sites < 1:
        raise ConfigError(f"--sites must be >= 1, got {sites}")
    return RunConfig.from_mapping(values), sites


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medgan`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "simulate":
            from simulation.interrupts import release_process
            from simulation.simulate import SimulationError, run_simulation_job

            config, sites = simulate_config(args)
            try:
                run_simulation_job(config, sites, verbose=args.verbose,
                                   ray_address_flag=args.ray_address)
            except SimulationError as error:
                print(f"medgan: error: {error}", file=sys.stderr, flush=True)
                return release_process(2)  # no ServerApp thread left waiting on dead sites
        elif args.command == "generate":
            from simulation.generate import generate

            out = generate(args.run, args.n, args.out, args.label, args.seed, args.checkpoint,
                           args.device, args.format, args.site)
            print(f"wrote {args.n} synthetic images to {out}")
        elif args.command == "evaluate":
            from simulation.evaluate import evaluate_run

            result = evaluate_run(args.run, args.checkpoint, args.generator,
                                  args.eval_samples)
            for key, value in result["metrics"].items():
                if key == "sites":
                    for site, figures in value.items():
                        print(f"  {site:16s} " + "  ".join(
                            f"{k} {v:.3f}" for k, v in figures.items() if k != "eval_examples"))
                else:
                    print(f"  {key:16s} {value:.4f}" if isinstance(value, float)
                          else f"  {key}: {value}")
            print(f"round {result['round']} metrics written to {result['written']}")
        elif args.command == "audit":
            from simulation.audit_report import run_audit_command

            return run_audit_command(args)
        elif args.command == "data":
            from simulation.data_inspect import run_inspect

            return run_inspect(args)
    except (ConfigError, DataError, FileNotFoundError, ValueError) as error:
        print(f"medgan: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        resume = f"--resume {interrupt.args[0]}" if interrupt.args else "--resume"
        print(f"medgan: interrupted; completed rounds are saved (resume with {resume})",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
