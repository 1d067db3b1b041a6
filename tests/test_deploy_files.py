"""The compose layout in deploy/: its configs pass `check-config`, and the compose file agrees
with them and with the installed PyFlink (no Docker, no browser, no Flink)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
CONFIG_IN_CONTAINER = "/config/harvester.toml"
HARVESTERS = ("harvester-a", "harvester-b")
FLINK_SERVICES = ("jobmanager", "taskmanager")

pytestmark = pytest.mark.usefixtures("clean_env")


def compose() -> dict[str, Any]:
    """The compose file, anchors and merge keys resolved (ruamel.yaml: a dependency already)."""
    loaded: dict[str, Any] = YAML(typ="safe", pure=True).load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def mounts(name: str) -> dict[str, str]:
    """Container path → source (a named volume or a path relative to deploy/)."""
    found = {}
    for entry in service(name).get("volumes", []):
        source, target, *_ = entry.split(":")
        found[target] = source
    return found


def config_of(name: str) -> Path:
    """The host file that the service mounts as its config."""
    source = mounts(name)[CONFIG_IN_CONTAINER]
    return (DEPLOY / source).resolve()


def service_env(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    assert isinstance(env, dict), f"{name}: give environment as a mapping"
    return {key: str(value) for key, value in env.items()}


def effective_config(name: str, scratch: Path) -> dict[str, Any]:
    """`harvester check-config` of the service's config, with the environment the compose sets.

    The config's folders are container paths (/var/lib/harvester, /pipeline) that this host may
    not be allowed to make: they are moved under `scratch` for the check, and the test compares
    the paths themselves from the file.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("HARVESTER_")}
    env |= service_env(name)
    env |= {
        "HARVESTER_STATE__DIR": str(scratch / "state"),
        "HARVESTER_STATE__DATA_DIR": str(scratch / "data"),
        "HARVESTER_FLINK__LOG_DIR": str(scratch / "flink-log"),
        "HARVESTER_FLINK__CHECKPOINT_DIR": str(scratch / "flink-checkpoints"),
    }
    command = [sys.executable, "-m", "harvester", "check-config", "--format", "json"]
    result = subprocess.run(
        [*command, "--config", str(config_of(name))],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    effective: dict[str, Any] = json.loads(result.stdout)
    return effective


def file_config(name: str) -> dict[str, Any]:
    """The service's config as written (its container paths)."""
    return tomllib.loads(config_of(name).read_text(encoding="utf-8"))


def shared_mount(name: str) -> PurePosixPath:
    """Where the service mounts the volume the harvesters and Flink share."""
    (target,) = [target for target, source in mounts(name).items() if source == "pipeline"]
    return PurePosixPath(target)


def test_every_file_the_compose_mounts_is_a_harvester_config_checked_here() -> None:
    files = {
        (name, target)
        for name in compose()["services"]
        for target, source in mounts(name).items()
        if source.startswith(".")
    }
    assert files == {(name, CONFIG_IN_CONTAINER) for name in HARVESTERS}


@pytest.mark.parametrize("name", HARVESTERS)
def test_each_harvester_config_passes_check_config(name: str, tmp_path: Path) -> None:
    effective = effective_config(name, tmp_path)
    flink = effective["flink"]
    assert (flink["mode"], flink["address"]) == ("remote", "jobmanager:8081")
    # The image's health check asks the port the environment names, else 8787.
    port = effective["http"]["port"]
    assert service_env(name).get("HARVESTER_HTTP__PORT", "8787") == str(port)
    # /healthz refuses a Host whose port is not its own: published on the same port.
    assert f"127.0.0.1:{port}:{port}" in service(name)["ports"]
    assert effective["http"]["bind"] == "0.0.0.0"


def test_the_flink_image_is_the_installed_pyflink_version() -> None:
    version = importlib.metadata.version("apache-flink")
    dockerfile = (DEPLOY / "flink.Dockerfile").read_text(encoding="utf-8")
    assert re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE) == [f"flink:{version}-java17"]
    for name in FLINK_SERVICES:
        build = service(name)["build"]
        assert (build["context"], build["dockerfile"]) == (".", "flink.Dockerfile")
        assert service(name)["image"].endswith(f":{version}-java17")


def test_harvesters_and_flink_see_the_shared_folders_at_the_same_paths() -> None:
    mount_points = {name: shared_mount(name) for name in (*HARVESTERS, *FLINK_SERVICES)}
    assert len(set(mount_points.values())) == 1, mount_points
    (shared,) = set(mount_points.values())
    for name in HARVESTERS:
        config = file_config(name)
        for folder in (
            config["flink"]["log_dir"],
            config["flink"]["checkpoint_dir"],
            config["state"]["data_dir"],
        ):
            assert PurePosixPath(folder).is_relative_to(shared), (name, folder)
        assert not PurePosixPath(config["state"]["dir"]).is_relative_to(shared)


def test_no_two_harvesters_share_a_state_dir_log_or_target() -> None:
    configs = {name: file_config(name) for name in HARVESTERS}
    state_volumes = {mounts(name)["/var/lib/harvester"] for name in HARVESTERS}
    assert len(state_volumes) == len(HARVESTERS)
    for path in (
        ("flink", "log_dir"),
        ("flink", "checkpoint_dir"),
        ("state", "data_dir"),
    ):
        values = {config[path[0]][path[1]] for config in configs.values()}
        assert len(values) == len(HARVESTERS), path
    names = [target["name"] for config in configs.values() for target in config["targets"]]
    assert len(names) == len(set(names))
