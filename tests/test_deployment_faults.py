"""Faults on the deployment engine: a hospital and then the server die mid-run; the run finishes.

One story, so that the slow part (Flower notices a killed SuperNode only when its heartbeat
expires, about 35-60 s after the kill) is paid once (~130-150 s on 2 cores):

1. A SuperLink (TLS, SuperNode authentication, ``--database``) and three hospitals start a
   3-round run with ``min-sites=2`` and a ``round-timeout``.
2. During round 2, hospital-3's SuperNode is SIGKILLed (its ClientApp with it). Round 2 still
   completes with the other two within the round timeout, and hospital-3 is recorded and
   logged as absent.
3. Then the whole server side is SIGKILLed (SuperLink, SuperExec, ServerApp): the run in flight
   is lost to Flower, but round 2's checkpoint and records are on disk.
4. The SuperLink restarts on the same database (keys, nodes and runs kept; hospitals 1 and 2
   reconnect by themselves). The crashed run, which Flower still lists as running, is stopped
   with ``flwr stop``. hospital-3 is restarted the way a supervisor would: the SuperLink refuses
   it ("[code: 2004]", also checked right after the kill) until the killed session's heartbeat
   has expired, then admits it with the same node id.
5. ``flwr run`` with ``resume`` continues from round 2's checkpoint: round 3 is trained by all
   three, and every site's epsilon continues from its own ledger (hospital-3's from round 1).

Real processes on 127.0.0.1; every one is stopped by the test (by PID) and checked gone.
"""

from __future__ import annotations

import json
import re
import signal
import time

import pytest
from deployment_helpers import (
    ADMITTED,
    BIN,
    CONNECTION,
    HOSPITALS,
    ROOT,
    Cluster,
    Started,
    free_port,
    make_dev_pki,
    read_metrics,
    requires_flower,
    rounds_done,
    run_config,
    wait_for,
)

pytestmark = requires_flower

ROUND_TIMEOUT = 45  # a healthy 3-site round of the tiny config takes ~15-30 s on 2 cores
HEARTBEAT_EXPIRY = 60  # Flower: 2 x the SuperNode's 30 s heartbeat interval


def node_id(process: Started) -> str:
    """The node id a SuperNode was admitted with (from its log)."""
    found = re.findall(r"SuperNode ID: (\d+)", process.output())
    assert found, process.output()
    return found[-1]


def test_killed_site_and_killed_server_the_run_still_finishes(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        pki = make_dev_pki(tmp_path / "pki", HOSPITALS)
        port = free_port()
        database = tmp_path / "superlink" / "state.db"
        database.parent.mkdir()
        cluster.write_connection(CONNECTION, f"127.0.0.1:{port}", pki / "ca.crt")

        def start_superlink(name: str) -> Started:
            process = cluster.superlink(port, pki, database, name=name)
            wait_for(lambda: cluster.flwr("supernode", "list", CONNECTION).returncode == 0, 60,
                     f"{name} to answer")
            return process

        def start_site(index: int, log_name: str | None = None) -> Started:
            name = HOSPITALS[index]
            return cluster.supernode(
                log_name or name, port, pki,
                f"site-name='{name}' partition-id={index} num-partitions=3 "
                f"state-dir='{tmp_path / name / 'state'}'",
                key=pki / "supernodes" / name)

        superlink = start_superlink("superlink")
        for name in HOSPITALS:
            cluster.register(pki / "supernodes" / f"{name}.pub", CONNECTION)
        sites = [start_site(i) for i in range(3)]
        wait_for(lambda: cluster.online_nodes(CONNECTION) == 3, 90, "3 hospitals online")
        victim_id = node_id(sites[2])

        # 1-2. A 3-round run; hospital-3 is SIGKILLed while it trains round 2.
        out = tmp_path / "run"
        first = cluster.start("flwr-run", str(BIN / "flwr"), "run", str(ROOT), CONNECTION,
                              "--stream", "--run-config",
                              run_config(out, 3, min_sites=2, round_timeout=ROUND_TIMEOUT,
                                         max_epsilon=100))
        wait_for(lambda: rounds_done(out) >= 1, 150, "round 1", every=0.2)
        wait_for(lambda: sites[2].output().count("Receiving: train message") >= 2
                 and sites[2].output().count("Start `flwr-clientapp`") >= 2,
                 120, "hospital-3 to start training round 2", every=0.2)
        cluster.kill(sites[2], signal.SIGKILL)
        killed_at = time.monotonic()
        # restarted at once, it is refused: for the SuperLink the old session is still online
        early = start_site(2, "hospital-3-restart-now")
        wait_for(lambda: not early.alive(), 30, "the immediate restart to be refused")
        assert "[code: 2004]" in early.output() and ADMITTED not in early.output(), \
            early.output()
        assert time.monotonic() - killed_at < 30  # well before the heartbeat expiry
        wait_for(lambda: rounds_done(out) >= 2, ROUND_TIMEOUT + 60, "round 2", every=0.1)
        round2_after = time.monotonic() - killed_at
        # the operator sees the absence in the run's log stream (a few seconds behind)
        wait_for(lambda: re.search(r"round 2: .*hospital-3", first.output()), 30,
                 "the absence in the streamed log", every=0.2)

        # 3. The whole server side dies right after round 2.
        cluster.kill(superlink, signal.SIGKILL)
        wait_for(lambda: not first.alive(), 60, "`flwr run` to notice the SuperLink is gone")
        assert first.popen.returncode != 0
        crashed_run = re.search(r"started run (\d+)", first.output()).group(1)
        records = read_metrics(out)
        round2 = records[1]
        assert set(round2["clients"]) == {"hospital-1", "hospital-2"}, round2
        assert all(c["status"] == "trained" for c in round2["clients"].values()), round2
        # absent (no reply before the timeout), or rejected should Flower's "node unavailable"
        # error (heartbeat expiry, 35-60 s after the kill) arrive first and be named after it
        assert any("hospital-3" in e for e in round2["absent"] + round2["rejected"]), round2
        # the round waited for its timeout, not for Flower's heartbeat expiry
        assert round2["seconds"] < ROUND_TIMEOUT + 15, round2
        assert round2_after < ROUND_TIMEOUT + 15
        assert (out / "checkpoints" / "round_002.pt").exists()

        # 4. The SuperLink restarts from its database: keys, nodes and runs are kept.
        start_superlink("superlink-restarted")
        # Flower lists the crashed run as still running and would deliver its pending
        # messages to the sites: stop it first (otherwise sites train a dead round, or wait
        # ~60 s for a half-sent message).
        stopped = cluster.flwr("stop", crashed_run, CONNECTION)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        # hospital-3 comes back when the SuperLink admits it again
        hospital3, attempts = cluster.restart_until_admitted(
            lambda attempt: start_site(2, f"hospital-3-restart-{attempt}"),
            timeout=HEARTBEAT_EXPIRY + 30)
        admitted_after = time.monotonic() - killed_at
        assert node_id(hospital3) == victim_id  # the same registered node, not a new one
        wait_for(lambda: cluster.online_nodes(CONNECTION) == 3, 60, "3 hospitals online again")
        refused = [p for p in cluster.started if p.name.startswith("hospital-3-restart-")][:-1]
        for process in refused:  # every refused attempt said why
            assert "[code: 2004]" in process.output(), process.output()

        # 5. Resume from round 2's checkpoint: round 3 with all three hospitals.
        resumed = cluster.flwr("run", str(ROOT), CONNECTION, "--stream", "--run-config",
                               run_config(out, 3, min_sites=2, round_timeout=2 * ROUND_TIMEOUT,
                                          max_epsilon=100, resume=f"'{out}'"),
                               timeout=150)
        log = resumed.stdout + resumed.stderr
        assert resumed.returncode == 0, log + cluster.logs()
        assert "round 3/3 | 3/3 sites trained" in log, log
        records = read_metrics(out)
        assert [r["round"] for r in records] == [1, 2, 3]  # nothing a completed round made is lost
        summary = json.loads((out / "summary.json").read_text())
        assert summary["stopped"] == "completed" and summary["rounds"] == 3
        epsilon = {r["round"]: {s: c["epsilon"] for s, c in r["clients"].items()} for r in records}
        for name in ("hospital-1", "hospital-2"):
            assert epsilon[3][name] > epsilon[2][name] > epsilon[1][name] > 0
        # hospital-3 continues from its ledger: rounds 1 and 3 (and 2 only if its ClientApp
        # had finished before the kill), never a restart at zero
        ledger = json.loads((tmp_path / "hospital-3" / "state" / "hospital-3"
                             / "privacy_ledger.json").read_text())
        rounds = [e["round"] for e in ledger["entries"] if e["mechanism"] == "dp-sgd"]
        assert [e["mechanism"] for e in ledger["entries"]].count("mean-embedding") == 1
        assert rounds[0] == 1 and rounds[-1] == 3, ledger
        assert epsilon[3]["hospital-3"] > epsilon[1]["hospital-3"]
        if rounds == [1, 3]:  # two rounds of the same DP steps: the same epsilon as the others'
            assert epsilon[3]["hospital-3"] == pytest.approx(epsilon[2]["hospital-1"], rel=1e-6)
        print(f"round 2 ended {round2_after:.1f} s after the kill; hospital-3 admitted again "
              f"at attempt {attempts}, {admitted_after:.1f} s after the kill")
    finally:
        survivors = cluster.stop_all()
        assert not survivors, f"processes left running: {survivors}"
