"""`flink.mode = "local-cluster"`: PyFlink's bundled standalone session cluster, run from here.

The cluster's configuration, logs, pid files and temp files live under one folder of the state
directory (`<state.dir>/flink-cluster/`), so it never writes inside the installed package. Our
jobs need nothing beyond PyFlink's `lib/` on the cluster: the collection source is converted on
the client, and no Python function runs in the cluster.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harvester.errors import FlinkError

if TYPE_CHECKING:
    from harvester.config import Settings

logger = logging.getLogger(__name__)

START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


def flink_home() -> Path:
    """The Flink distribution inside the installed `pyflink` package."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class LocalCluster:
    """Start, wait for and stop a standalone Flink cluster (one JobManager, one TaskManager)."""

    def __init__(self, home: Path, *, address: str = "localhost:8081", slots: int = 2) -> None:
        self.home = home
        self.address = address
        self.host, _, port = address.rpartition(":")
        self.port = int(port)
        self.slots = slots
        self._started = False

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.address}/"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            FLINK_CONF_DIR=str(self.home / "conf"),
            FLINK_LOG_DIR=str(self.home / "log"),
            FLINK_PID_DIR=str(self.home / "pid"),
            FLINK_IDENT_STRING="harvester",
        )
        env.pop("FLINK_HOME", None)
        return env

    def _prepare(self) -> None:
        """Write conf/ and the other folders; the previous run's logs are kept in log/."""
        dist = flink_home()
        conf = self.home / "conf"
        for folder in (conf, self.home / "tmp"):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(mode=0o700, parents=True)
        (self.home / "log").mkdir(mode=0o700, exist_ok=True)
        (self.home / "pid").mkdir(mode=0o700, exist_ok=True)
        for source in (dist / "conf").iterdir():
            if source.name != "config.yaml":
                shutil.copy(source, conf / source.name)
        # Imported here: only the local-cluster mode needs a YAML writer.
        from ruamel.yaml import YAML

        yaml = YAML(typ="safe")
        config: dict[str, Any] = yaml.load((dist / "conf" / "config.yaml").read_text())
        config["rest"] = {"address": self.host, "bind-address": self.host, "port": self.port}
        # A fixed RPC port (the bundled 6123) would collide with any other cluster on the host.
        jobmanager = config.setdefault("jobmanager", {})
        jobmanager["rpc"] = {"address": self.host, "port": _free_port(self.host)}
        config.setdefault("taskmanager", {})["numberOfTaskSlots"] = self.slots
        config["io"] = {"tmp": {"dirs": str(self.home / "tmp")}}
        with (conf / "config.yaml").open("w") as out:
            YAML().dump(config, out)
        (conf / "masters").write_text(f"{self.host}:{self.port}\n")
        (conf / "workers").write_text(f"{self.host}\n")

    def overview(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """The cluster's `/overview` (task managers, slots, jobs), None when it does not answer."""
        try:
            with urllib.request.urlopen(
                f"http://{self.address}/overview", timeout=timeout
            ) as reply:
                overview: dict[str, Any] = json.load(reply)
                return overview
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def _script(self, name: str) -> None:
        script = flink_home() / "bin" / name
        completed = subprocess.run(
            ["bash", str(script)],
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=STOP_TIMEOUT,
            check=False,
            # The cluster's processes inherit it: sink files, logs and temp files stay private.
            umask=0o077,
        )
        output = completed.stdout.decode(errors="replace").strip()
        if output:
            logger.debug("%s: %s", name, output)
        if completed.returncode != 0:
            raise FlinkError(f"{name} failed ({completed.returncode}): {output[-500:]}")

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the cluster and wait until a task manager has registered."""
        if (self.home / "pid").is_dir() and any((self.home / "pid").iterdir()):
            # Left over by a process that died without closing us: start clean.
            self._script("stop-cluster.sh")
            self._wait_gone()
        if self.overview() is not None:
            raise FlinkError(
                f"something already answers at {self.address}: stop it, or set flink.address "
                "to a free host:port for the local cluster"
            )
        self._prepare()
        self._script("start-cluster.sh")
        self._started = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            overview = self.overview()
            if overview and overview.get("taskmanagers", 0) >= 1:
                logger.info("Flink dashboard: %s", self.dashboard_url)
                return
            time.sleep(0.5)
        self.stop()
        raise FlinkError(
            f"the local Flink cluster did not come up within {timeout:.0f} s; "
            f"see its logs in {self.home / 'log'}"
        )

    def _wait_gone(self) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.overview(timeout=1.0) is not None and time.monotonic() < deadline:
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the cluster started by `start` and wait until its REST API is gone."""
        if not self._started:
            return
        self._started = False
        self._script("stop-cluster.sh")
        self._wait_gone()


def local_address(settings: Settings) -> str:
    """Where the local cluster listens (`flink.address`, else Flink's usual port)."""
    return settings.flink.address or "localhost:8081"


def check_reachable(address: str) -> None:
    """Raise `FlinkError` naming `address` unless a Flink cluster answers there."""
    try:
        with urllib.request.urlopen(f"http://{address}/overview", timeout=5) as reply:
            reply.read()
    except (OSError, urllib.error.URLError) as exc:
        raise FlinkError(
            f"the Flink cluster at {address} is unreachable ({exc}); "
            "check flink.address and that the cluster runs"
        ) from exc


def start_cluster(settings: Settings) -> tuple[str, LocalCluster | None]:
    """Where jobs go in the configured mode: `embedded`, or a cluster's host:port (a local
    cluster started here, returned too so that the caller stops it)."""
    flink = settings.flink
    if flink.mode == "local-cluster":
        cluster = LocalCluster(
            settings.state.dir / "flink-cluster",
            address=local_address(settings),
            slots=max(flink.parallelism, 2),
        )
        cluster.start()
        return cluster.address, cluster
    if flink.mode == "remote":
        # FlinkSettings rejects mode = "remote" without an address.
        assert flink.address is not None
        check_reachable(flink.address)
        return flink.address, None
    return "embedded", None
