"""What the daemon knows of each target's runs, the `/healthz` body, and retry backoff."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from harvester.spool import Quarantined
from harvester.timefmt import iso_utc

# Failed attempts in a row after which a target is reported unhealthy (it keeps its schedule).
UNHEALTHY_AFTER = 3
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_MAX = timedelta(minutes=5)


def backoff_delay(
    attempt: int,
    *,
    base: timedelta = BACKOFF_BASE,
    cap: timedelta = BACKOFF_MAX,
    rng: random.Random | None = None,
) -> timedelta:
    """Delay before retry `attempt` (0-based): exponential, capped, half of it random.

    The random half spreads targets that failed together (one network outage) apart.
    """
    full = min(cap.total_seconds(), base.total_seconds() * 2**attempt)
    return timedelta(seconds=full / 2 + (rng or random).uniform(0, full / 2))


@dataclass
class TargetStatus:
    """What /healthz reports about one target."""

    last_run_id: str | None = None
    last_status: str | None = None
    last_started: datetime | None = None
    last_finished: datetime | None = None
    last_error: str | None = None
    last_success: datetime | None = None
    consecutive_failures: int = 0
    running: bool = False

    def started(self, run_id: str) -> None:
        """A run of the target began (after its wait for a browser)."""
        self.last_run_id, self.last_started = run_id, datetime.now(UTC)

    def finished(self, outcome: str, error: str | None) -> None:
        """An attempt ended `committed`, `failed` or `cancelled`."""
        self.running = False
        self.last_status, self.last_error, self.last_finished = outcome, error, datetime.now(UTC)
        if outcome == "committed":
            self.consecutive_failures = 0
            self.last_success = self.last_finished
        elif outcome == "failed":
            # A run cancelled at shutdown says nothing about the target's health.
            self.consecutive_failures += 1

    def payload(
        self,
        *,
        next_run: datetime | None,
        unhealthy_after: int,
        redact: Callable[[str], str],
        quarantined: Sequence[Quarantined] = (),
    ) -> dict[str, Any]:
        """The target's entry in the /healthz body; run errors may quote a secret.

        `quarantined`: the target's spools in the quarantine folder, oldest first. They wait for
        a person, not for the target, whose runs go on: they leave `healthy` as it is.
        """
        last = quarantined[-1] if quarantined else None
        return {
            "last_run_id": self.last_run_id,
            "last_status": self.last_status,
            "last_started": _iso(self.last_started),
            "last_finished": _iso(self.last_finished),
            "last_success": _iso(self.last_success),
            "last_error": redact(self.last_error) if self.last_error else None,
            "next_run": _iso(next_run),
            "consecutive_failures": self.consecutive_failures,
            "running": self.running,
            "healthy": self.consecutive_failures < unhealthy_after,
            "quarantined": len(quarantined),
            "last_quarantined": None
            if last is None
            else {"run_id": last.run_id, "at": last.at, "reason": redact(last.problem)},
        }


def health_body(
    targets: Mapping[str, TargetStatus],
    *,
    scheduling: bool,
    writable: bool,
    next_run: Callable[[str], datetime | None],
    unhealthy_after: int,
    redact: Callable[[str], str],
    quarantined: Sequence[Quarantined] = (),
) -> tuple[bool, dict[str, Any]]:
    """(ok, body) for /healthz: ok while the scheduler runs and the state DB is writable.

    An unhealthy target does not make it fail: a remote site being down is no reason to have
    the daemon's container restarted. `quarantined`: the spools in the quarantine folder.
    """
    ok = scheduling and writable
    return ok, {
        "status": "ok" if ok else "unavailable",
        "scheduler_running": scheduling,
        "state_writable": writable,
        "targets": {
            name: status.payload(
                next_run=next_run(name),
                unhealthy_after=unhealthy_after,
                redact=redact,
                quarantined=[q for q in quarantined if q.target == name],
            )
            for name, status in list(targets.items())
        },
    }


def _iso(moment: datetime | None) -> str | None:
    return iso_utc(moment) if moment else None
