"""Helpers for the deployment tests: real Flower processes on loopback, stopped by their PIDs.

Every process is started in its own session (``start_new_session``) with a marker in its
environment (``MEDGAN_TEST_PROCESS``). Flower's SuperLink starts a *detached* ``flower-superexec``
(a new session, so ``killpg`` on the SuperLink does not reach it) which starts the ServerApp;
those inherit the marker, so :meth:`Cluster.kill` finds them through ``/proc/*/environ`` and
the test stops every process it caused, and checks that none survives.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from server import run_records

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent
DEV_CA = ROOT / "deploy" / "dev_ca.sh"
MARKER = "MEDGAN_TEST_PROCESS"
ADMITTED = "SuperNode ID:"  # a SuperNode's log line once the SuperLink accepted it
# The tiny run config of every deployment test (seconds per round on 2 CPU cores). The RDP
# accountant: each round is a fresh ClientApp process, and PRV's noise search costs ~5 s there.
TINY = {"image-size": 16, "local-steps": 2, "batch-size": 16, "samples-per-site": 48,
        "base-channels": 8, "accountant": "'rdp'"}
# Sent only where the app's run config has the key (Flower refuses unknown keys).
OPTIONAL = {"eval-every": 0}


def flower_installed() -> bool:
    """Whether Flower's commands sit beside this Python (they are started by name)."""
    return (BIN / "flower-superlink").exists() and (BIN / "flower-supernode").exists()


# The three hospitals and the connection name the multi-site tests (and the docs) use.
HOSPITALS = ("hospital-1", "hospital-2", "hospital-3")
CONNECTION = "consortium"
requires_flower = pytest.mark.skipif(
    not flower_installed(), reason="Flower's commands are not installed beside this Python")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def make_dev_pki(out: Path, sites: Iterable[str], server_names: Iterable[str] = ()) -> Path:
    """Run ``deploy/dev_ca.sh`` (development CA, SuperLink certificate, SuperNode keys)."""
    args = ["bash", str(DEV_CA), "--out", str(out)]
    for name in server_names:
        args += ["--server-name", name]
    for site in sites:
        args += ["--site", site]
    subprocess.run(args, check=True, capture_output=True, text=True, timeout=60)
    return out


def _marked_pids(tag: str) -> list[int]:
    """PIDs of live processes whose environment carries ``MARKER=tag`` (Linux /proc)."""
    found = []
    needle = f"{MARKER}={tag}".encode()
    if not Path("/proc").is_dir():  # not Linux: process groups only
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


@dataclass
class Started:
    """One process the test started (and, through its marker, everything it started)."""

    name: str
    popen: subprocess.Popen
    log: Path
    tag: str

    def output(self) -> str:
        """Its log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class Cluster:
    """Starts Flower processes for one test and stops them all (by PID) at the end."""

    workdir: Path
    started: list[Started] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        for folder in ("home", "flwr", "logs"):
            (self.workdir / folder).mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "HOME": str(self.workdir / "home"),
                    "FLWR_HOME": str(self.workdir / "flwr"), "FLWR_DISABLE_UPDATE_CHECK": "1",
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    "PYTHONUNBUFFERED": "1"}

    # --- connections --------------------------------------------------------------------
    def write_connection(self, name: str, address: str, ca: Path | None = None) -> None:
        """``[superlink.NAME]`` in ``$FLWR_HOME/config.toml`` (TLS with ``ca``, else insecure)."""
        path = self.workdir / "flwr" / "config.toml"
        text = path.read_text() if path.exists() else ""
        security = f'root-certificates = "{ca}"' if ca else "insecure = true"
        text += f'[superlink.{name}]\naddress = "{address}"\n{security}\n\n'
        path.write_text(text)

    # --- processes ------------------------------------------------------------------------
    def start(self, name: str, *args: str) -> Started:
        """Start ``args`` in its own session, output to ``logs/NAME.log`` (appended)."""
        log = self.workdir / "logs" / f"{name}.log"
        tag = f"{self.run_id}-{name}-{len(self.started)}"
        with log.open("a") as handle:
            popen = subprocess.Popen(list(args), env={**self.env, MARKER: tag}, stdout=handle,
                                     stderr=subprocess.STDOUT, cwd=self.workdir,
                                     start_new_session=True)
        process = Started(name, popen, log, tag)
        self.started.append(process)
        return process

    def superlink(self, port: int, pki: Path | None, database: Path, name: str = "superlink"
                  ) -> Started:
        """``flower-superlink`` on 127.0.0.1:port: TLS + SuperNode auth with ``pki``."""
        args = [str(BIN / "flower-superlink"), "--host", "127.0.0.1", "--port", str(port),
                "--disable-runtime-dependency-installation", "--database", str(database)]
        if pki is None:
            args.append("--insecure")
        else:
            args += ["--ssl-ca-certfile", str(pki / "ca.crt"), "--ssl-certfile",
                     str(pki / "server.crt"), "--ssl-keyfile", str(pki / "server.key"),
                     "--enable-supernode-auth"]
        return self.start(name, *args)

    def supernode(self, name: str, link_port: int, pki: Path | None, node_config: str,
                  key: Path | None = None, extra: Iterable[str] = ()) -> Started:
        """``flower-supernode`` for one site (TLS verified against the dev CA, auth key)."""
        args = [str(BIN / "flower-supernode"), "--superlink", f"127.0.0.1:{link_port}",
                "--host", "127.0.0.1", "--port", str(free_port()), "--node-config", node_config,
                *extra]
        if pki is None:
            args.append("--insecure")
        else:
            args += ["--root-certificates", str(pki / "ca.crt")]
            if key is not None:
                args += ["--auth-supernode-private-key", str(key)]
        return self.start(name, *args)

    def flwr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """A ``flwr`` CLI command, waited for (output captured)."""
        return subprocess.run([str(BIN / "flwr"), *args], env=self.env, cwd=self.workdir,
                              capture_output=True, text=True, timeout=timeout)

    def register(self, public_key: Path, connection: str) -> None:
        """``flwr supernode register KEY CONNECTION``, which must succeed."""
        result = self.flwr("supernode", "register", str(public_key), connection)
        assert result.returncode == 0, result.stdout + result.stderr

    def online_nodes(self, connection: str) -> int:
        """How many SuperNodes the SuperLink lists as online (``flwr supernode list``)."""
        result = self.flwr("supernode", "list", connection, "--format", "json")
        try:
            nodes = json.loads(result.stdout).get("nodes", [])
        except json.JSONDecodeError:
            return 0
        return sum(1 for node in nodes if str(node.get("status", "")).lower() == "online")

    def node_ids(self, connection: str) -> dict[str, str]:
        """``{node-id: status}`` of every SuperNode the SuperLink knows."""
        result = self.flwr("supernode", "list", connection, "--format", "json")
        try:
            nodes = json.loads(result.stdout).get("nodes", [])
        except json.JSONDecodeError:
            return {}
        return {str(node["node-id"]): str(node.get("status", "")) for node in nodes}

    def restart_until_admitted(self, start: Callable[[int], Started], timeout: float
                               ) -> tuple[Started, int]:
        """Start a SuperNode again and again (as a supervisor would) until the SuperLink admits
        it; return the process and the number of attempts. A SuperNode whose previous process
        was killed is refused ("[code: 2004]", exit at once) until the SuperLink has marked the
        old session offline: its heartbeat expiry, up to 2 x 30 s after the kill."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            process = start(attempt)
            wait_for(lambda: ADMITTED in process.output() or not process.alive(),
                     max(5.0, deadline - time.monotonic()), f"{process.name} to start")
            if ADMITTED in process.output() and process.alive():
                return process, attempt
            if time.monotonic() > deadline:
                raise AssertionError(f"{process.name} not admitted after {attempt} attempts:\n"
                                     f"{process.output()[-1500:]}")
            time.sleep(1.0)

    def pids(self, process: Started) -> list[int]:
        """The live processes of ``process``: itself and everything that carries its marker."""
        pids = set(_marked_pids(process.tag))
        if process.alive():
            pids.add(process.popen.pid)
        return sorted(pids)

    def kill(self, process: Started, sig: int = signal.SIGKILL, timeout: float = 20) -> None:
        """Send ``sig`` to ``process``'s group and to every process carrying its marker; wait
        until they are gone (SIGKILL whatever is left after ``timeout``)."""
        self._signal(process, sig)
        deadline = time.monotonic() + timeout
        while self.pids(process) and time.monotonic() < deadline:
            process.popen.poll()
            time.sleep(0.2)
        if self.pids(process):
            self._signal(process, signal.SIGKILL)
            wait_for(lambda: not self.pids(process), 10, f"{process.name} to die")
        process.popen.wait(timeout=5)

    def _signal(self, process: Started, sig: int) -> None:
        if process.alive():
            try:
                os.killpg(process.popen.pid, sig)
            except ProcessLookupError:
                pass
        for pid in _marked_pids(process.tag):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop_all(self) -> list[int]:
        """SIGTERM everything (SuperNodes first), SIGKILL what remains; return survivors."""
        for process in sorted(self.started, key=lambda p: p.name.startswith("superlink")):
            self._signal(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while any(self.pids(p) for p in self.started) and time.monotonic() < deadline:
            time.sleep(0.2)
        for process in self.started:
            self._signal(process, signal.SIGKILL)
        for process in self.started:
            try:
                process.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        time.sleep(0.2)
        return sorted({pid for p in self.started for pid in self.pids(p)})

    def logs(self) -> str:
        """Every log, for an assertion message."""
        parts = []
        for path in sorted((self.workdir / "logs").glob("*.log")):
            parts.append(f"===== {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


def app_config_keys() -> set[str]:
    """The run-config keys of this Flower app (``[tool.flwr.app.config]``)."""
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return set(tomllib.load(handle)["tool"]["flwr"]["app"]["config"])


def run_config(out: Path, rounds: int, **extra: Any) -> str:
    """A ``--run-config`` string for a tiny deployment run (values already in TOML syntax)."""
    known = app_config_keys()
    values = {**TINY, **{k: v for k, v in OPTIONAL.items() if k in known},
              "num-rounds": rounds, "out-dir": f"'{out}'",
              **{k.replace("_", "-"): v for k, v in extra.items()}}
    return " ".join(f"{key}={value}" for key, value in values.items())


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The complete lines of a run's ``metrics.jsonl`` (the project's own reader)."""
    return run_records.read_metrics(run_dir / run_records.METRICS_FILE)


def rounds_done(run_dir: Path) -> int:
    """The last round recorded in ``metrics.jsonl`` (0 if none)."""
    records = read_metrics(run_dir)
    return records[-1]["round"] if records else 0

