"""Ctrl-C and a failing simulation engine end ``medgan simulate`` cleanly, never hang it."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from server.stop_request import clear_stop, request_stop, stop_reason
from simulation.cli import main
from simulation.interrupts import root_cause

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
       "FLWR_DISABLE_UPDATE_CHECK": "1"}
TINY = ["--sites", "2", "--image-size", "16", "--local-steps", "3", "--batch-size", "16",
        "--samples-per-site", "64", "--seed", "1", "--device", "cpu", "--accountant", "rdp"]
CHEAP_EVAL = "eval-samples = 40\ntstr-steps = 10\nholdout-fraction = 0.2\neval-every = 100\n"


def start_run(out: Path, rounds: int) -> subprocess.Popen:
    config = out.parent / "eval.toml"
    config.write_text(CHEAP_EVAL)
    return subprocess.Popen([sys.executable, "-m", "simulation.cli", "simulate", *TINY,
                             "--rounds", str(rounds), "--out", str(out), "--config", str(config)],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_round(process: subprocess.Popen, limit_s: float = 120) -> list[str]:
    """stdout lines up to the first finished round."""
    lines: list[str] = []
    deadline = time.monotonic() + limit_s
    for line in process.stdout:
        lines.append(line)
        if line.startswith("round 1/") or time.monotonic() > deadline:
            return lines
    raise AssertionError("the run ended before its first round:\n" + "".join(lines)
                         + process.stderr.read())


def finish(process: subprocess.Popen, limit_s: float = 90) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=limit_s)  # a hang fails the test here
    return process.returncode, out, err


def test_ctrl_c_stops_after_the_round_and_resume_goes_on(tmp_path):
    out = tmp_path / "run"
    process = start_run(out, rounds=8)
    wait_for_round(process)
    process.send_signal(signal.SIGINT)
    code, stdout, stderr = finish(process)
    assert code == 130, stderr
    assert "stopping after this round" in stderr and f"--resume {out}" in stderr
    summary = json.loads((out / "summary.json").read_text())
    done = summary["rounds"]
    assert 1 <= done < 8
    assert summary["stopped"] == f"stopped before round {done + 1}: interrupted (Ctrl-C)"
    assert len(list((out / "checkpoints").glob("round_*.pt"))) >= 1
    # the next run is not stopped by this one's request; it goes on from the next round
    assert main(["simulate", "--resume", str(out)]) == 0
    rounds = [json.loads(x)["round"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rounds == list(range(1, 9))


def test_second_ctrl_c_quits_at_once_keeping_finished_rounds(tmp_path):
    out = tmp_path / "run"
    process = start_run(out, rounds=500)
    wait_for_round(process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    code, _, stderr = finish(process, limit_s=30)
    assert code == 130, stderr
    assert "quitting now" in stderr
    assert (out / "checkpoints" / "round_001.pt").is_file()
    assert json.loads((out / "summary.json").read_text())["rounds"] >= 1


ENGINE_FAILS = """
import sys
from flwr.server.superlink.fleet.vce.backend import raybackend
def fail(self, config):
    raise PermissionError("Permission denied: 'ray/core/src/ray/gcs/gcs_server'")
raybackend.RayBackend.init_ray = fail
from simulation.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_failing_engine_is_a_clear_error_not_a_hang(tmp_path):
    # Ray cannot start (seen on a machine whose Ray binaries lost their execute bit): Flower
    # logs it and raises, while the ServerApp thread would wait an hour for the sites
    out = tmp_path / "run"
    process = subprocess.run([sys.executable, "-c", ENGINE_FAILS, "simulate", *TINY,
                              "--rounds", "2", "--out", str(out)],
                             cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert process.returncode == 2, process.stderr[-2000:]
    error = process.stderr.strip().splitlines()[-1]
    assert error.startswith("medgan: error: Flower's simulation engine stopped (PermissionError")
    assert "gcs_server" in error and f"--resume {out}" in error


def test_a_stop_request_is_one_reason_until_cleared():
    clear_stop()
    assert stop_reason() is None
    request_stop("first")
    request_stop("second")  # the first reason is what happened
    assert stop_reason() == "first"
    clear_stop()
    assert stop_reason() is None


def test_root_cause_walks_the_chain():
    try:
        try:
            raise PermissionError("denied")
        except PermissionError as inner:
            raise RuntimeError("crashed") from inner
    except RuntimeError as outer:
        assert root_cause(outer) == "PermissionError: denied"
    assert root_cause(ValueError("alone")) == "ValueError: alone"


def test_waiting_for_sites_ends_on_a_stop_request():
    from server.federation import wait_for_sites

    class NoSites:
        excluded_nodes: set = set()

        def eligible_nodes(self, grid):
            return []

    clear_stop()
    timer = threading.Timer(0.2, request_stop, args=("test",))
    timer.start()
    started = time.monotonic()
    try:
        assert wait_for_sites(None, NoSites(), min_sites=1, timeout=60) is False
    finally:
        timer.cancel()
        clear_stop()
    assert time.monotonic() - started < 5


@pytest.fixture(autouse=True)
def _no_stop_left_behind():
    yield
    clear_stop()


CHILD = """
import signal, sys, time
def stop(signum, frame):
    open(sys.argv[1], "a").write("stop;")
    sys.exit(130)
signal.signal(signal.SIGINT, stop)
open(sys.argv[1], "a").write("ready;")
time.sleep(float(sys.argv[2]))
sys.exit(3)
"""


def test_a_benchmarks_ctrl_c_reaches_its_run_once(tmp_path):
    # benchmarks/quality.py runs each medgan simulate as a child in its own session (so a
    # terminal's Ctrl-C does not reach it twice, which would quit it at once) and forwards it
    from simulation.interrupts import run_forwarding_ctrl_c

    log = tmp_path / "log"
    assert run_forwarding_ctrl_c([sys.executable, "-c", CHILD, str(log), "0"], tmp_path) == 3
    log.unlink()
    # Python's own Ctrl-C behaviour, as in a benchmark's process, whatever this process
    # inherited (a detached shell starts it with SIGINT ignored) or an earlier test installed
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    while_waiting = threading.Timer(1.5, os.kill, args=(os.getpid(), signal.SIGINT))
    while_waiting.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_forwarding_ctrl_c([sys.executable, "-c", CHILD, str(log), "30"], tmp_path)
    finally:
        while_waiting.cancel()
        signal.signal(signal.SIGINT, previous)
    assert log.read_text() == "ready;stop;"
    assert time.monotonic() - started < 10
