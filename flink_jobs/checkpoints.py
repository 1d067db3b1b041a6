"""The continuous job's retained checkpoints: which one to resume from, which SQL took them, and
the clean-up of older ones.

Flink writes `<checkpoint_dir>/<job id>/chk-<n>/_metadata` (the file that makes a checkpoint
complete) and keeps the last two per job when the job is cancelled. Every start of the job is a
new job id, so the folder also holds the checkpoints of earlier starts until the new one has a
checkpoint of its own. `PIPELINE` beside them names the SQL (`protocol.fingerprint`) they belong
to: a checkpoint cannot be resumed with other statements.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

from flink_jobs.protocol import PIPELINE_CHANGES, PIPELINE_VERSION
from harvester.errors import PipelineChangedError

FINGERPRINT_FILE = "PIPELINE"
_CHECKPOINT = re.compile(r"^chk-(\d+)$")


def _completed(checkpoint_dir: Path) -> list[tuple[float, int, Path]]:
    """(mtime of `_metadata`, number, folder) of every complete checkpoint."""
    found: list[tuple[float, int, Path]] = []
    if not checkpoint_dir.is_dir():
        return found
    for job in checkpoint_dir.iterdir():
        if not job.is_dir():
            continue
        for folder in job.iterdir():
            number = _CHECKPOINT.match(folder.name)
            metadata = folder / "_metadata"
            if number is None:
                continue
            with contextlib.suppress(FileNotFoundError):
                found.append((metadata.stat().st_mtime, int(number[1]), folder))
    return found


def latest(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint, None when there is none."""
    completed = _completed(checkpoint_dir)
    return max(completed)[2] if completed else None


def check_fingerprint(checkpoint_dir: Path, fingerprint: str) -> None:
    """Refuse to resume checkpoints that other SQL took; record `fingerprint` when none exist.

    `PIPELINE` holds the fingerprint and the `PIPELINE_VERSION` it was taken at (a file of
    version 1 holds the fingerprint only), so that an upgrade that changed the job's own tables
    is told as that, not as a change of the user's statements.
    """
    path = checkpoint_dir / FINGERPRINT_FILE
    fields = path.read_text().split() if path.is_file() else []
    recorded = fields[0] if fields else None
    version = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 1
    if latest(checkpoint_dir) is not None and recorded is not None and recorded != fingerprint:
        if version != PIPELINE_VERSION:
            why = (
                f"this version of the harvester changed the continuous job's own tables "
                f"(pipeline version {version} → {PIPELINE_VERSION}: {PIPELINE_CHANGES}) since "
                f"its last checkpoint (in {checkpoint_dir}), which cannot be resumed with them: "
                "run `harvester flink reset` to start the pipeline anew"
            )
        else:
            why = (
                f"flink.statements changed since the continuous job's last checkpoint (in "
                f"{checkpoint_dir}), and a checkpoint cannot be resumed with other SQL: put the "
                "old statements back, or run `harvester flink reset` to start the pipeline anew"
            )
        raise PipelineChangedError(
            f"{why} from the log's retained files (your sinks then receive those rows again)"
        )
    checkpoint_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if fields != [fingerprint, str(PIPELINE_VERSION)]:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"{fingerprint} {PIPELINE_VERSION}\n")


def remove_older(checkpoint_dir: Path, job_id: str) -> None:
    """Drop the checkpoints of earlier starts once job `job_id` has completed one of its own."""
    if not any((p / "_metadata").exists() for p in (checkpoint_dir / job_id).glob("chk-*")):
        return
    for job in checkpoint_dir.iterdir():
        if job.is_dir() and job.name != job_id:
            shutil.rmtree(job, ignore_errors=True)


def reset(checkpoint_dir: Path) -> bool:
    """Forget every checkpoint (the next start reads the log's files from the beginning);
    False when there was none."""
    if not checkpoint_dir.is_dir():
        return False
    had = latest(checkpoint_dir) is not None
    shutil.rmtree(checkpoint_dir)
    return had
