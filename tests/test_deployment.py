"""The Flower app on Flower's deployment engine: real SuperLink/SuperNode processes on loopback.

Insecure (no TLS) on 127.0.0.1 only, bounded in time; every process is stopped by its PID (see
``deployment_helpers``). The TLS + authentication set-up is in ``test_deployment_tls.py``.
"""

import json

from deployment_helpers import (
    ROOT,
    Cluster,
    free_port,
    requires_flower,
    run_config,
    wait_for,
)

pytestmark = requires_flower


def test_two_sites_train_through_superlink_and_supernodes(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        link = free_port()
        cluster.write_connection("loopback", f"127.0.0.1:{link}")
        cluster.superlink(link, None, tmp_path / "state.db")
        wait_for(lambda: cluster.flwr("supernode", "list", "loopback").returncode == 0, 60,
                 "the SuperLink to answer")
        for site in (0, 1):
            cluster.supernode(f"supernode{site}", link, None,
                              f"partition-id={site} num-partitions=2 "
                              f"state-dir='{tmp_path / 'state'}'")
        wait_for(lambda: cluster.online_nodes("loopback") == 2, 60, "2 SuperNodes online")
        out = tmp_path / "run"
        run = cluster.flwr("run", str(ROOT), "loopback", "--stream", "--run-config",
                           run_config(out, 2), timeout=240)
        assert run.returncode == 0, run.stdout + run.stderr + cluster.logs()
        assert "round 2/2 | 2/2 sites trained" in run.stdout + run.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["rounds"] == 2 and set(summary["clients"]) == {"site-0", "site-1"}
        assert (tmp_path / "state" / "site-1" / "privacy_ledger.json").exists()
    finally:
        survivors = cluster.stop_all()
        assert not survivors, f"processes left running: {survivors}"
