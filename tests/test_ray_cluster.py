"""``medgan simulate --ray-address``: the virtual hospitals run on a Ray cluster started here.

The cluster is a real one-node Ray head (``ray start --head --block``) in its own process
group and temp dir, on free loopback ports; teardown signals that group only (never
``ray stop``, which would stop every Ray instance on the machine).
"""

import json
import os
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from simulation import simulate
from simulation.simulate import backend_config, ray_address, sites_at_once

ROOT = Path(__file__).parents[1]
RAY = Path(sys.executable).parent / "ray"
PORT_FLAGS = ("port", "ray-client-server-port", "dashboard-agent-listen-port",
              "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")


def test_backend_config_joins_a_cluster_without_resource_arguments(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert simulate.available_memory() > 0  # psutil or /proc/meminfo
    local = backend_config("cpu")["init_args"]
    assert "address" not in local and local["num_cpus"] >= 1
    joined = backend_config("cpu", "10.0.0.7:6379")
    assert joined["init_args"]["address"] == "10.0.0.7:6379"
    # Ray refuses these when connecting to an existing cluster
    assert not {"num_cpus", "num_gpus", "resources", "object_store_memory"} & set(
        joined["init_args"])
    assert joined["client_resources"] == {"num_cpus": 1, "num_gpus": 0.0}
    assert ray_address() is None and ray_address("h:1") == "h:1"
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")  # Ray's own variable counts too
    assert ray_address() == "head:6379" and ray_address("h:1") == "h:1"


def test_sites_share_this_machines_cores_instead_of_waiting_for_a_second_wave(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    # 3 sites on 2 cores: all at once (1.5 core-steps a step, not 2 waves); 4: two waves of 2
    assert [sites_at_once(n, 2) for n in (1, 2, 3, 4, 1000)] == [1, 2, 3, 2, 2]
    assert sites_at_once(100, 16) == 20  # 5 waves of 20 sharing 16 cores: 6.25, not 7 of 16
    # no more workers than the free memory holds (~1 GB each), never fewer than the cores
    assert sites_at_once(3, 2, memory=3 * 2**30) == 3
    assert sites_at_once(3, 2, memory=2 * 2**30) == sites_at_once(3, 2, memory=0) == 2
    monkeypatch.setattr(simulate, "available_memory", lambda: 2**30)
    assert backend_config("cpu", None, 3)["client_resources"]["num_cpus"] == 1
    monkeypatch.setattr(simulate, "available_memory", lambda: 8 * 2**30)
    share = backend_config("cpu", None, 3)["client_resources"]["num_cpus"]
    assert share < 1 and int(2 / share) == 3  # Flower's actor pool: int(cores / share) = 3
    assert backend_config("cpu", None, 1)["client_resources"]["num_cpus"] == 1
    assert backend_config("cpu", None, 4)["client_resources"]["num_cpus"] == 1
    # a cluster's size is its own, and GPU runs keep a CPU per site beside their GPU share
    assert backend_config("cpu", "h:1", 3)["client_resources"]["num_cpus"] == 1
    assert backend_config("cuda", None, 3)["client_resources"] == {"num_cpus": 1, "num_gpus": 0.25}


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def child_env():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(FLWR_DISABLE_UPDATE_CHECK="1", RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0")
    return env


@pytest.fixture(scope="module")
def ray_head():
    if not RAY.exists():
        pytest.skip(f"no ray executable beside {sys.executable}")
    temp = Path(tempfile.mkdtemp(prefix="medgan-ray-", dir="/tmp"))  # short: Ray's socket paths
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    log = (temp / "head.log").open("w")
    process = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2",
         "--disable-usage-stats", "--include-dashboard=false", f"--temp-dir={temp}",
         *(f"--{flag}={port}" for flag, port in ports.items())],
        stdout=log, stderr=subprocess.STDOUT, env=child_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "Ray runtime started" not in (temp / "head.log").read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not start:\n{(temp / 'head.log').read_text()}")
            time.sleep(0.5)
        yield f"127.0.0.1:{ports['port']}", temp
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the head and everything it started
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_simulate_runs_its_sites_on_the_cluster(ray_head, tmp_path):
    address, ray_temp = ray_head
    out = tmp_path / "run"
    cheap_eval = tmp_path / "eval.toml"
    cheap_eval.write_text("eval-samples = 20\ntstr-steps = 5\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "simulation.cli", "simulate", "--sites", "2", "--rounds", "1",
         "--image-size", "16", "--local-steps", "2", "--batch-size", "16",
         "--samples-per-site", "48", "--seed", "1", "--device", "cpu", "--accountant", "rdp",
         "--out", str(out),
         "--config", str(cheap_eval), "--ray-address", address],
        cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output[-3000:]
    assert f"on the Ray cluster at {address}" in output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 1 and summary["stopped"] == "completed"
    assert set(summary["clients"]) == {"site-0", "site-1"}
    # The run's driver connected to *this* cluster: Ray wrote its log into the cluster's session.
    logs = ray_temp / "session_latest" / "logs"
    drivers = [p.name for p in logs.glob("python-core-driver-*.log")]
    assert any(name.endswith(f"_{process.pid}.log") for name in drivers), drivers
    assert list(logs.glob("python-core-worker-*.log"))  # and the sites ran on its workers
