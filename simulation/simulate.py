"""``medgan simulate``: N virtual hospitals on one machine, on Flower's simulation engine.

Wiring only: the same ServerApp and ClientApp as a real deployment, given the run config
directly (Flower's Python entry point does not read ``pyproject.toml``, and ``flwr run``
would make uv install the app's dependencies, a multi-GB CUDA torch among them).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from client.app import build_client_app
from client.data.canaries import CANARY_SITE
from client.site import load_data, run_canaries, site_config
from medgan_models.config import RunConfig
from server.app import build_server_app
from server.checkpoint import latest_checkpoint
from server.run_records import SUMMARY_FILE, read_summary
from server.stop_request import clear_stop, request_stop, stop_reason
from simulation.interrupts import INTERRUPTED, root_cause, stop_on_ctrl_c


class SimulationError(RuntimeError):
    """A simulation that cannot start or did not finish; the message says why."""


def preflight(config: RunConfig, sites: int) -> list[str]:
    """Load every site's data once, here, so bad input fails before any worker starts."""
    lines = []
    for site in range(sites):
        node = {"partition-id": site, "num-partitions": sites}
        site_cfg, settings = site_config(config.to_mapping(), node)
        data = load_data(site_cfg, settings)
        if config.conditional and data.num_classes > config.num_classes:
            raise SimulationError(
                f"{settings.site_id}: data has {data.num_classes} classes but num-classes is "
                f"{config.num_classes}; set num-classes to {data.num_classes}")
        counts = ", ".join(f"{k} {v}" for k, v in data.label_counts().items())
        lines.append(f"  {settings.site_id}: {len(data)} images ({counts}) from {data.source}")
        if config.canaries and settings.partition_id == CANARY_SITE:
            kept = int(run_canaries(config).included.sum())
            lines.append(f"  {settings.site_id} also trains on {kept} of {config.canaries} canary "
                         "images (one-run privacy audit: medgan audit)")
    return lines


def ray_address(flag: str | None = None) -> str | None:
    """The Ray cluster to join: ``--ray-address``, else Ray's own ``RAY_ADDRESS``, else none
    (a private Ray instance on this machine)."""
    return flag or os.environ.get("RAY_ADDRESS") or None


SITE_WORKER_BYTES = 2**30  # one virtual hospital's Ray worker: 0.8-1.0 GB resident (measured)


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (``MemAvailable``); None where unknown."""
    try:
        import psutil  # the benchmarks' extra; /proc/meminfo says the same on Linux
        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def sites_at_once(sites: int, cores: int, memory: int | None = None) -> int:
    """How many virtual hospitals train at the same time on ``cores`` CPU cores, one thread each.

    Sites queue in waves of this many; ``w`` sites sharing ``c < w`` cores run ``w / c`` times
    slower. The number minimising waves x slowdown, between ``cores`` and ``2 x cores`` (more
    would only add Ray workers, each holding its own models), fewest on ties: 3 sites on 2
    cores train all at once (1.5 core-steps a step instead of 2 waves of 1), 4 in 2 waves.
    More than ``cores`` only as far as ``memory`` (bytes free, when known) holds their
    workers (:data:`SITE_WORKER_BYTES` each).
    """
    cores, sites = max(1, cores), max(1, sites)
    most = 2 * cores
    if memory is not None:
        most = min(most, max(cores, memory // SITE_WORKER_BYTES))
    if sites <= cores:
        return sites
    return min(range(cores, most + 1),
               key=lambda w: math.ceil(sites / w) * max(1.0, w / cores))


def backend_config(device: str, address: str | None = None,
                   sites: int | None = None) -> dict[str, Any]:
    """Ray settings: a CPU share per virtual hospital, a GPU share when CUDA is used.

    Flower passes ``init_args`` to ``ray.init``. Without an address Ray starts a private
    instance sized to this machine; with one (``HOST:PORT`` of a running head, or ``auto``)
    the run joins that cluster, whose size is the cluster's own: Ray rejects ``num_cpus`` / ``num_gpus`` when connecting, so none is given.
    On this machine's CPUs, ``sites`` (when given) train :func:`sites_at_once` at a time: each
    takes ``cores / that`` of a CPU (Ray then gives each one thread); elsewhere one CPU each.
    """
    import torch

    use_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    init_args: dict[str, Any] = {"logging_level": logging.ERROR, "include_dashboard": False}
    cpus_per_site = 1.0
    if address:
        init_args["address"] = address
    else:
        cores = init_args["num_cpus"] = os.cpu_count() or 1
        if sites and not use_gpu:
            # rounded down, so that Flower's int(cores / share) counts every site
            at_once = sites_at_once(sites, cores, available_memory())
            cpus_per_site = min(1.0, math.floor(1000 * cores / at_once) / 1000)
    return {
        "client_resources": {"num_cpus": cpus_per_site, "num_gpus": 0.25 if use_gpu else 0.0},
        "init_args": init_args,
    }


def run_simulation_job(config: RunConfig, sites: int, verbose: bool = False,
                       ray_address_flag: str | None = None) -> dict[str, Any]:
    """Run the federation to the end; return ``summary.json`` as a dict.

    ``ray_address_flag``: a running Ray cluster to run the virtual hospitals on (see
    :func:`ray_address`); the ServerApp, and so the run folder, stay on this machine.
    """
    from flwr.simulation import run_simulation

    run_dir = Path(config.resume or config.out_dir)
    if not config.resume and latest_checkpoint(run_dir) is not None:
        raise SimulationError(f"{run_dir} already holds a run: pass --resume {run_dir} to go on, "
                              "or another --out")
    config = config.replace(out_dir=str(run_dir), min_sites=min(config.min_sites, sites))
    print(f"medgan: {sites} virtual hospitals, {config.num_rounds} rounds, "
          f"{config.image_size}x{config.image_size}, target epsilon {config.target_epsilon:g} "
          f"per site (delta {config.delta:g}), run folder {run_dir}", flush=True)
    for line in preflight(config, sites):
        print(line, flush=True)
    address = ray_address(ray_address_flag)
    backend = backend_config(config.device, address, sites)
    if address:
        print(f"  on the Ray cluster at {address}", flush=True)
    elif backend["client_resources"]["num_cpus"] < 1:
        cores = backend["init_args"]["num_cpus"]
        at_once = int(cores / backend["client_resources"]["num_cpus"])  # as Flower counts
        print(f"  {at_once} sites train at a time on {cores} CPU cores, one thread each",
              flush=True)
    logging.getLogger("flwr").setLevel(logging.INFO if verbose else logging.ERROR)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silence a Ray tip
    overrides = config.to_mapping()
    started = time.perf_counter()
    clear_stop()
    with stop_on_ctrl_c(run_dir):
        try:
            run_simulation(server_app=build_server_app(overrides),
                           client_app=build_client_app(overrides),
                           num_supernodes=sites, backend_config=backend,
                           verbose_logging=verbose)
        except RuntimeError as error:  # Flower's "An error was encountered. Ending simulation."
            request_stop("the simulation engine stopped")  # the ServerApp thread: end, don't wait
            raise SimulationError(
                f"Flower's simulation engine stopped ({root_cause(error)}); finished rounds are "
                f"saved in {run_dir} (resume with --resume {run_dir}); rerun with --verbose "
                "for Flower's log") from error
    summary_path = run_dir / SUMMARY_FILE
    summary = read_summary(run_dir)
    if stop_reason() == INTERRUPTED:
        raise KeyboardInterrupt(str(run_dir))  # it stopped cleanly at a round: say so, exit 130
    if not summary:
        raise SimulationError(f"the simulation ended without writing {summary_path}; "
                              "rerun with --verbose to see Flower's log")
    print(f"done in {time.perf_counter() - started:.0f} s: {summary['rounds']} rounds, "
          f"epsilon max {summary['epsilon_max']:.2f} at delta {summary['delta']:g} "
          f"({summary['stopped']})", flush=True)
    if summary.get("samples"):
        print(f"sample grid: {run_dir / summary['samples']}", flush=True)
    print(f"summary:     {summary_path}", flush=True)
    return summary
