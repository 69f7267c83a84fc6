"""The Docker files (no Docker engine needed): the compose file parses, every command is one
Flower's own parsers accept, every mounted file exists or is made by ``deploy/dev_ca.sh``, and the
TLS / authentication / state settings are those the deployment needs."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from deployment_helpers import ROOT, make_dev_pki

yaml = pytest.importorskip("yaml")

DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
HOSPITALS = ("hospital-1", "hospital-2", "hospital-3")
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: Any) -> Any:
    """Compose's ``${VAR:-default}`` with every variable unset (the defaults); ``$$`` is ``$``."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m.group(2) or "", value).replace("$$", "$")
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE.read_text()))


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """``{container path: (source, read_only)}`` of a service's short-syntax volumes."""
    found = {}
    for entry in service.get("volumes", []):
        source, target, *mode = entry.split(":")
        found[target] = (source, bool(mode) and "ro" in mode[0].split(","))
    return found


def superlink_args(command: list[str]):
    from flwr.superlink.cli.flower_superlink import _parse_args_run_superlink
    return _parse_args_run_superlink().parse_args(command)


def supernode_args(command: list[str]):
    from flwr.supernode.cli.flower_supernode import _parse_args_run_supernode
    return _parse_args_run_supernode().parse_args(command)


def test_compose_has_one_server_three_hospitals_and_their_volumes(compose):
    services = compose["services"]
    assert {"superlink", "register", *HOSPITALS} <= set(services)
    assert services["coordinator"]["profiles"]  # a tool, not started by `up`
    named = set(compose["volumes"])
    for service in services.values():
        for source, _ in mounts(service).values():
            if not source.startswith((".", "/")):
                assert source in named, f"volume {source} is not declared"
    assert {"superlink-state", "server-runs", *(f"{h}-state" for h in HOSPITALS)} <= named


def test_superlink_runs_tls_with_node_auth_a_database_and_no_runtime_installs(compose):
    service = compose["services"]["superlink"]
    command = service["command"]
    args = superlink_args(command)
    assert "--disable-runtime-dependency-installation" in command
    assert "--enable-supernode-auth" in command and args.enable_supernode_auth
    assert not args.insecure
    mounted = mounts(service)
    for path in (args.ssl_ca_certfile, args.ssl_certfile, args.ssl_keyfile):
        assert path in mounted and mounted[path][1], f"{path} must be mounted read-only"
    assert mounted[args.ssl_keyfile][0].endswith("/server.key")
    # the state database and the run folders live on named volumes
    database_dir = str(Path(args.database).parent)
    assert database_dir in mounted and not mounted[database_dir][0].startswith((".", "/"))
    assert "/srv/medgan" in mounted
    assert args.host == "0.0.0.0"
    assert f"{args.port}:{args.port}" in service["ports"]
    assert str(args.port) in " ".join(service["healthcheck"]["test"])


def test_every_hospital_verifies_the_server_authenticates_and_keeps_its_own_state(compose):
    from flwr.common.config import parse_config_args

    from client.site import NODE_KEYS

    services = compose["services"]
    link_port = superlink_args(services["superlink"]["command"]).port
    state_volumes, keys = set(), set()
    for name in HOSPITALS:
        service = services[name]
        args = supernode_args(service["command"])
        assert not args.insecure
        assert args.superlink == f"superlink:{link_port}"
        mounted = mounts(service)
        assert mounted[args.root_certificates][0].endswith("/ca.crt")
        key_source, read_only = mounted[args.auth_supernode_private_key]
        assert key_source.endswith(f"/supernodes/{name}") and read_only  # the private key
        keys.add(key_source)
        node_config = parse_config_args([args.node_config])
        assert set(node_config) <= set(NODE_KEYS), node_config
        assert node_config["site-name"] == name
        data, read_only = mounted[node_config["data-dir"]]
        assert read_only, "a hospital's images are mounted read-only"
        state_source, _ = mounted[node_config["state-dir"]]
        assert not state_source.startswith((".", "/")), "the ledger lives on a named volume"
        state_volumes.add(state_source)
        assert service["restart"] == "unless-stopped"
        assert service["depends_on"]["register"]["condition"] == "service_completed_successfully"
    assert len(state_volumes) == len(keys) == len(HOSPITALS)


def test_registration_uses_the_public_keys_and_the_tls_connection(compose):
    service = compose["services"]["register"]
    mounted = mounts(service)
    public = sorted(source for source, _ in mounted.values() if source.endswith(".pub"))
    assert public == sorted(f"../dev-pki/supernodes/{h}.pub" for h in HOSPITALS)
    assert not any(re.search(r"/supernodes/[\w-]+$", s) for s, _ in mounted.values()), \
        "the registration container must not see private keys"
    assert "flwr supernode register" in service["command"][0]
    assert service["depends_on"]["superlink"]["condition"] == "service_healthy"
    config_target = "/home/app/.flwr/config.toml"
    source, _ = mounted[config_target]
    connection = tomllib.loads((DOCKER / source).read_text())["superlink"]["medgan"]
    link_port = superlink_args(compose["services"]["superlink"]["command"]).port
    assert connection["address"] == f"superlink:{link_port}"
    assert connection["root-certificates"] in mounted and "insecure" not in connection
    assert mounts(compose["services"]["coordinator"])[config_target][0] == source


def test_mounted_files_exist_or_are_made_by_the_dev_ca_script(compose, tmp_path):
    """Every host file compose mounts is in the repo or in what dev_ca.sh writes, and the
    server certificate it writes is valid for the name the hospitals use (``superlink``)."""
    pki = make_dev_pki(tmp_path / "dev-pki", HOSPITALS, server_names=["superlink"])
    for name, service in compose["services"].items():
        for source, _ in mounts(service).values():
            if source.startswith("../dev-pki/"):
                assert (pki / source.removeprefix("../dev-pki/")).is_file(), (name, source)
            elif source.startswith("../data/"):
                continue  # the hospital's own images, outside the repository
            elif source.startswith("."):
                assert (DOCKER / source).exists(), (name, source)
    text = subprocess.run(["openssl", "x509", "-in", str(pki / "server.crt"), "-noout", "-ext",
                           "subjectAltName,extendedKeyUsage"],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:superlink" in text and "DNS:localhost" in text and "TLS Web Server" in text


def test_dockerfile_targets_sources_and_user(compose):
    text = DOCKERFILE.read_text()
    stages = {name: image for image, name in
              re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", text, re.M | re.I)}
    assert {"base", "superlink", "supernode"} <= set(stages)
    assert stages["base"].startswith(("python:", "flwr/"))
    for service in compose["services"].values():
        build = service.get("build")
        if build:
            assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
            assert build["target"] in stages
    for source in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"COPY {path}: not in the repository"
    assert re.search(r"pip install[^\n]*\s\.\s", text), "the image installs the project"
    assert 'ENTRYPOINT ["flower-superlink"]' in text and 'ENTRYPOINT ["flower-supernode"]' in text
    assert re.search(r"^USER app$", text, re.M)
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", "dev-pki", "data", "runs"} <= set(ignore)


@pytest.mark.skipif(shutil.which("docker") is None
                    or subprocess.run(["docker", "compose", "version"],
                                      capture_output=True).returncode != 0,
                    reason="docker compose is not installed")
def test_docker_compose_accepts_the_file():
    result = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
