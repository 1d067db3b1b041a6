"""The few calls of Flink's REST API that the harvester makes: find, watch and cancel a job."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from harvester.errors import FlinkError

TIMEOUT = 5.0
# A job in one of these states will still consume: it is ours to watch, not to resubmit.
ALIVE = frozenset({"INITIALIZING", "CREATED", "RUNNING", "RESTARTING", "FAILING", "RECONCILING"})
STOPPING = ALIVE | {"CANCELLING"}
CANCEL_TIMEOUT = 30.0


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    name: str
    state: str


def call(address: str, path: str, *, method: str = "GET") -> Any:
    """One request to the REST API at `address` (host:port); its JSON answer."""
    request = urllib.request.Request(f"http://{address}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
            body = reply.read()
    except urllib.error.HTTPError as exc:
        raise FlinkError(f"Flink's REST API at {address} answered {exc.code} to {path}") from exc
    except (OSError, urllib.error.URLError) as exc:
        raise FlinkError(f"the Flink cluster at {address} is unreachable ({exc})") from exc
    return json.loads(body) if body.strip() else None


def jobs(address: str) -> list[JobInfo]:
    """Every job the cluster knows (running and finished)."""
    overview = call(address, "/jobs/overview") or {}
    return [JobInfo(job["jid"], job["name"], job["state"]) for job in overview.get("jobs", [])]


def job_state(address: str, job_id: str) -> str:
    return str(call(address, f"/jobs/{job_id}")["state"])


def cancel(address: str, job_id: str) -> None:
    call(address, f"/jobs/{job_id}?mode=cancel", method="PATCH")


def cancel_and_wait(address: str, job_ids: list[str], timeout: float = CANCEL_TIMEOUT) -> list[str]:
    """Cancel these jobs (those still alive) and wait until they stopped; the ids of those that
    did not stop within `timeout` seconds."""
    for job_id in job_ids:
        if job_state(address, job_id) in ALIVE:
            cancel(address, job_id)
    deadline = time.monotonic() + timeout
    waiting = list(job_ids)
    while waiting := [job for job in waiting if job_state(address, job) in STOPPING]:
        if time.monotonic() > deadline:
            return waiting
        time.sleep(0.2)
    return []


@dataclass(frozen=True)
class Checkpoint:
    """A completed checkpoint: its number, when it was triggered and completed (epoch ms)."""

    number: int
    triggered_ms: int
    completed_ms: int


def last_checkpoint(address: str, job_id: str) -> Checkpoint | None:
    """The job's latest completed checkpoint, None before its first."""
    latest = (call(address, f"/jobs/{job_id}/checkpoints") or {}).get("latest") or {}
    completed = latest.get("completed") or {}
    if not completed.get("latest_ack_timestamp"):
        return None
    return Checkpoint(
        int(completed["id"]),
        int(completed["trigger_timestamp"]),
        int(completed["latest_ack_timestamp"]),
    )


def last_exception(address: str, job_id: str) -> tuple[int, str] | None:
    """(epoch ms, stack trace) of the job's latest failure, None when it never failed."""
    answer = call(address, f"/jobs/{job_id}/exceptions?maxExceptions=1") or {}
    entries = (answer.get("exceptionHistory") or {}).get("entries") or []
    if entries:
        return int(entries[0].get("timestamp") or 0), str(entries[0].get("stacktrace") or "")
    if answer.get("root-exception"):
        return int(answer.get("timestamp") or 0), str(answer["root-exception"])
    return None
