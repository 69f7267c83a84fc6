"""The Flower app on Flower's deployment engine: real SuperLink/SuperNode processes on loopback.

Insecure (no TLS) on 127.0.0.1 only, bounded in time; every process is stopped by its PID.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(not (BIN / "flower-superlink").exists(),
                                reason="Flower's commands are not installed beside this Python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_sites_train_through_superlink_and_supernodes(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path / "home"), "FLWR_HOME": str(tmp_path / "flwr"),
           "FLWR_DISABLE_UPDATE_CHECK": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    (tmp_path / "flwr").mkdir()
    (tmp_path / "home").mkdir()
    link = free_port()
    (tmp_path / "flwr" / "config.toml").write_text(
        f'[superlink.loopback]\naddress = "127.0.0.1:{link}"\ninsecure = true\n')
    processes = []

    def start(*args: str, log: str) -> subprocess.Popen:
        handle = (tmp_path / log).open("w")
        process = subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                   cwd=tmp_path, start_new_session=True)
        processes.append(process)
        return process

    try:
        start(str(BIN / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port",
              str(link), "--disable-runtime-dependency-installation",
              "--database", str(tmp_path / "state.db"), log="superlink.log")
        time.sleep(3)
        for site in (0, 1):
            start(str(BIN / "flower-supernode"), "--insecure", "--superlink",
                  f"127.0.0.1:{link}", "--port", str(free_port()), "--node-config",
                  f"partition-id={site} num-partitions=2 state-dir='{tmp_path / 'state'}'",
                  log=f"supernode{site}.log")
        time.sleep(3)
        out = tmp_path / "run"
        run = subprocess.run(
            [str(BIN / "flwr"), "run", str(ROOT), "loopback", "--stream", "--run-config",
             f"num-rounds=2 image-size=16 local-steps=2 batch-size=16 samples-per-site=48 "
             f"base-channels=8 out-dir='{out}'"],
            env=env, capture_output=True, text=True, timeout=240)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "round 2/2 | 2/2 sites trained" in run.stdout + run.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["rounds"] == 2 and set(summary["clients"]) == {"site-0", "site-1"}
        assert (tmp_path / "state" / "site-1" / "privacy_ledger.json").exists()
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(tmp_path / "flwr", ignore_errors=True)
