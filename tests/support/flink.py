"""Spools and settings for the Flink tests, and reading what Flink's file sinks committed."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from harvester.config import Settings
from harvester.spool import ROW_FIELDS, SpoolFile

AT = "2026-11-26T15:00:00.123Z"


def flink_settings(root: Path, **flink: Any) -> Settings:
    """Settings with the state under `root` and these `[flink]` keys."""
    return Settings.model_validate(
        {"state": {"dir": str(root / "state"), "data_dir": str(root / "data")}, "flink": flink}
    )


def change(
    key: object, op: str, value: object = None, *, old: object = None, store: str = "items"
) -> dict[str, object]:
    """A changelog row's varying part (`old`: the value a +U or -D replaced, None for none);
    `write_spool` adds the rest."""
    return {
        "store": store,
        "key": orjson.dumps(key).decode(),
        "op": op,
        "value": None if op == "-D" else orjson.dumps(value).decode(),
        "old_value": None if old is None else orjson.dumps(old).decode(),
    }


def write_spool(
    folder: Path, run_id: str, target: str, changes: list[dict[str, object]]
) -> SpoolFile:
    """A spool file in the contract's format (what `harvester.spool` writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.jsonl"
    with path.open("wb") as out:
        for row in changes:
            full = {
                "run_id": run_id,
                "target": target,
                "origin": "http://127.0.0.1:8765",
                "db_name": "shop",
                "db_version": 3,
                "store": row["store"],
                "key": row["key"],
                "op": row["op"],
                "value": row["value"],
                "old_value": row["old_value"],
                "value_hash": "0" * 64 if row["value"] is None else "1" * 64,
                "harvested_at": AT,
            }
            # In the spool's order, and a KeyError for a field added to the row but not here.
            out.write(orjson.dumps({name: full[name] for name in ROW_FIELDS}) + b"\n")
    return SpoolFile(run_id, target, path, len(changes))


def read_rows(folder: Path) -> list[dict[str, Any]]:
    """Every JSON line in the committed files under `folder`, with hive partitions added."""
    rows = []
    for path in sorted(folder.rglob("part-*")):
        if path.name.startswith("."):
            continue
        partitions = dict(
            part.split("=", 1) for part in path.relative_to(folder).parts[:-1] if "=" in part
        )
        for line in path.read_bytes().splitlines():
            rows.append({**orjson.loads(line), **partitions})
    return rows


def runs(rows: list[dict[str, Any]], *run_ids: str) -> list[dict[str, Any]]:
    """The rows of these runs."""
    return [row for row in rows if row["run_id"] in run_ids]


@contextlib.contextmanager
def tmpfs(folder: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs mounted at `folder` (a disk that fills up, or a read-only one), unmounted
    afterwards; skips the test where mounting is not allowed (it needs root)."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("cannot mount a tmpfs: no mount command")
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {folder} (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        # Lazy: a worker killed a moment ago may still hold files there.
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def fill(folder: Path, leave: int) -> None:
    """Fill the file system of `folder` up to `leave` bytes free."""
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    with (folder / "filler").open("wb") as out:
        out.write(b"\0" * max(free - leave, 0))
