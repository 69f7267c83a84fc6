"""A TLS federation with SuperNode authentication on Flower's deployment engine (loopback).

One SuperLink (TLS with the development CA of ``deploy/dev_ca.sh``, ``--enable-supernode-auth``,
``--database``) and three hospital SuperNodes, each with its own registered key, its own
``--node-config`` and its own state folder; the run launched with ``flwr run``. Real processes,
127.0.0.1 only, every one stopped by the test (by PID) and checked gone. ~90 s on 2 cores.
"""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from deployment_helpers import (
    CONNECTION,
    DEV_CA,
    HOSPITALS,
    ROOT,
    Cluster,
    free_port,
    make_dev_pki,
    read_metrics,
    requires_flower,
    run_config,
    wait_for,
)

pytestmark = requires_flower



def test_dev_ca_script_makes_a_ca_a_server_certificate_and_node_keys(tmp_path):
    pki = make_dev_pki(tmp_path / "pki", ["st-marys", "city-general"],
                       server_names=["fl.example.org", "10.1.2.3"])
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(pki / "ca.crt"),
                             str(pki / "server.crt")], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    text = subprocess.run(["openssl", "x509", "-in", str(pki / "server.crt"), "-noout", "-ext",
                           "subjectAltName,extendedKeyUsage"],
                          capture_output=True, text=True, check=True).stdout
    for name in ("DNS:localhost", "IP Address:127.0.0.1", "DNS:fl.example.org",
                 "IP Address:10.1.2.3", "TLS Web Server Authentication"):
        assert name in text, text
    subject = subprocess.run(["openssl", "x509", "-in", str(pki / "ca.crt"), "-noout",
                              "-subject"], capture_output=True, text=True, check=True).stdout
    assert "NOT FOR PRODUCTION" in subject
    for site in ("st-marys", "city-general"):
        public = (pki / "supernodes" / f"{site}.pub").read_text()
        assert public.startswith("ecdsa-sha2-nistp256 ")  # Flower rejects Ed25519
        assert (pki / "supernodes" / site).stat().st_mode & 0o077 == 0  # private: owner only
    assert (pki / "server.key").stat().st_mode & 0o077 == 0
    assert (pki / ".gitignore").read_text().splitlines()[-1] == "*"
    # it never silently replaces a CA that sites may already trust
    again = subprocess.run(["bash", str(DEV_CA), "--out", str(pki)], capture_output=True,
                           text=True)
    assert again.returncode != 0 and "--force" in again.stderr


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    """SuperLink + 3 registered, online hospital SuperNodes; everything stopped afterwards."""
    workdir = tmp_path_factory.mktemp("tls-federation")
    cluster = Cluster(workdir)
    try:
        pki = make_dev_pki(workdir / "pki", [*HOSPITALS, "unregistered"])
        port = free_port()
        cluster.write_connection(CONNECTION, f"127.0.0.1:{port}", pki / "ca.crt")
        (workdir / "superlink").mkdir()
        cluster.superlink(port, pki, workdir / "superlink" / "state.db")
        wait_for(lambda: cluster.flwr("supernode", "list", CONNECTION).returncode == 0, 60,
                 "the SuperLink to answer over TLS")
        for name in HOSPITALS:
            cluster.register(pki / "supernodes" / f"{name}.pub", CONNECTION)
        for index, name in enumerate(HOSPITALS):
            state = workdir / name / "state"
            cluster.supernode(
                name, port, pki,
                f"site-name='{name}' partition-id={index} num-partitions={len(HOSPITALS)} "
                f"state-dir='{state}'",
                key=pki / "supernodes" / name)
        wait_for(lambda: cluster.online_nodes(CONNECTION) == len(HOSPITALS), 90,
                 "3 hospitals online")
        yield cluster, pki, port, workdir
    finally:
        survivors = cluster.stop_all()
        assert not survivors, f"processes left running: {survivors}"


def test_sites_without_a_registered_key_or_the_ca_are_refused(federation):
    cluster, pki, port, workdir = federation
    other_ca = make_dev_pki(workdir / "other-pki", ["stranger"])
    intruders = [
        # a valid key pair the consortium never registered
        cluster.supernode("unregistered", port, pki, "partition-id=0 num-partitions=3",
                          key=pki / "supernodes" / "unregistered"),
        # no key at all
        cluster.supernode("no-key", port, pki, "partition-id=0 num-partitions=3"),
        # a registered key, but it trusts another CA: it must not accept our server certificate
        cluster.supernode("other-ca", port, other_ca, "partition-id=0 num-partitions=3",
                          key=pki / "supernodes" / "hospital-1",
                          extra=["--max-retries", "1", "--max-wait-time", "10"]),
        # plain HTTP against the TLS port
        cluster.supernode("plain", port, None, "partition-id=0 num-partitions=3",
                          extra=["--max-retries", "1", "--max-wait-time", "10"]),
    ]
    wait_for(lambda: not any(p.alive() for p in intruders), 60, "refused SuperNodes to exit")
    for process in intruders:
        assert process.popen.returncode != 0, process.output()
        assert "SuperNode ID:" not in process.output(), process.output()
    assert "[code: 2004] Failed to activate SuperNode" in intruders[0].output()
    assert "[code: 2001]" in intruders[1].output()
    assert "CERTIFICATE_VERIFY_FAILED" in intruders[2].output()
    for process in intruders:  # whatever they started is gone too
        cluster.kill(process, signal.SIGKILL)
    # the CLI cannot talk to the SuperLink without TLS either
    cluster.write_connection("plaintext", f"127.0.0.1:{port}")
    assert cluster.flwr("supernode", "list", "plaintext").returncode != 0
    # and the three registered hospitals are still the only nodes
    nodes = cluster.node_ids(CONNECTION)
    assert sorted(nodes.values()) == ["online"] * 3, nodes


def test_three_hospitals_train_two_rounds_over_tls(federation):
    cluster, pki, port, workdir = federation
    out = workdir / "run"
    run = cluster.flwr("run", str(ROOT), CONNECTION, "--stream", "--run-config",
                       run_config(out, 2, min_sites=3, round_timeout=120), timeout=240)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log + cluster.logs()
    assert "round 2/2 | 3/3 sites trained" in log, log + cluster.logs()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "completed" and summary["rounds"] == 2
    assert set(summary["clients"]) == set(HOSPITALS)
    rounds = read_metrics(out)
    assert [r["round"] for r in rounds] == [1, 2]
    for name in HOSPITALS:
        # each hospital's ledger is on its own disk, and epsilon accumulates over the run
        ledger = json.loads((workdir / name / "state" / name / "privacy_ledger.json").read_text())
        assert [(e["round"], e["mechanism"]) for e in ledger["entries"]] == [
            (1, "mean-embedding"), (1, "dp-sgd"), (2, "dp-sgd")]  # the release, then rounds
        assert rounds[1]["clients"][name]["epsilon"] > rounds[0]["clients"][name]["epsilon"] > 0
    assert (out / "checkpoints" / "round_002.pt").exists()
