"""The daemon's Prometheus metrics, on a registry of their own.

A private `CollectorRegistry` (not prometheus_client's global one) lets tests and several daemons
in one process each have their own numbers, and keeps library metrics we did not choose out.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "DaemonMetrics"]

# Harvests take from about a second (small store) to many minutes (millions of records).
_DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# Watch mode aims at seconds from a write to its commit (debounce 250ms, max_delay 2s by default).
_WATCH_DELAY_BUCKETS = (0.25, 0.5, 1, 2, 3, 4, 6, 10, 30, 60, 300)


class DaemonMetrics:
    """Metric objects the daemon updates; `render()` gives the text exposition."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.runs = Counter(
            "harvester_runs",
            "Finished harvest attempts by target and status (committed, failed, cancelled).",
            ["target", "status"],
            registry=self.registry,
        )
        self.records = Counter(
            "harvester_records",
            "Changelog rows committed, by target and op (+I, +U, -D), plus unchanged records.",
            ["target", "op"],
            registry=self.registry,
        )
        self.runs_skipped = Counter(
            "harvester_runs_skipped",
            "Scheduled runs skipped because the target's previous run was still going.",
            ["target"],
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "harvester_run_duration_seconds",
            "Wall time of a harvest attempt, read to commit.",
            ["target"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.last_success = Gauge(
            "harvester_last_success_timestamp_seconds",
            "Unix time of the target's last committed run.",
            ["target"],
            registry=self.registry,
        )
        self.consecutive_failures = Gauge(
            "harvester_consecutive_failures",
            "Failed attempts of the target since its last committed run.",
            ["target"],
            registry=self.registry,
        )
        self.browsers_alive = Gauge(
            "harvester_browsers_alive",
            "Browsers currently open for reads.",
            registry=self.registry,
        )
        self.handed_off = Gauge(
            "harvester_runs_handed_off",
            "Committed runs of the target (of those the state DB keeps) handed off to the log.",
            ["target"],
            registry=self.registry,
        )
        self.consumed = Gauge(
            "harvester_runs_consumed",
            "Runs handed off to the log that the continuous Flink job has consumed.",
            ["target"],
            registry=self.registry,
        )
        self.delivery_lag = Gauge(
            "harvester_delivery_lag_seconds",
            "How long the target's oldest run not yet consumed by Flink has waited (0: none).",
            ["target"],
            registry=self.registry,
        )
        self.watch_events = Counter(
            "harvester_watch_events",
            "IndexedDB change events received from the target's watched page.",
            ["target"],
            registry=self.registry,
        )
        self.watch_reads = Counter(
            "harvester_watch_reads",
            "Event-driven (partial) harvests the target's change events triggered.",
            ["target"],
            registry=self.registry,
        )
        self.watch_reopens = Counter(
            "harvester_watch_reopens",
            "Times the target's watched page was lost (crash, close, navigation) and reopened.",
            ["target"],
            registry=self.registry,
        )
        self.watch_delay = Histogram(
            "harvester_watch_delay_seconds",
            "From the first change event of a batch to the commit of the run that read it.",
            ["target"],
            buckets=_WATCH_DELAY_BUCKETS,
            registry=self.registry,
        )
        self.pending_spools = Gauge(
            "harvester_pending_spools",
            "Spool files read but not yet committed.",
            registry=self.registry,
        )

    def delivery(self, target: str, *, handed_off: int, consumed: int, lag: float) -> None:
        """The target's runs handed off to the log and consumed by Flink, and how long the
        oldest run not consumed has waited."""
        self.handed_off.labels(target=target).set(handed_off)
        self.consumed.labels(target=target).set(consumed)
        self.delivery_lag.labels(target=target).set(lag)

    def count_pending_spools(self, counter: Callable[[], int]) -> None:
        """Compute the pending-spool gauge at scrape time, so it is never stale."""
        self.pending_spools.set_function(counter)

    def run_finished(
        self,
        target: str,
        *,
        outcome: str,
        seconds: float,
        counts: Mapping[str, int],
        failures: int,
    ) -> None:
        """Count one finished attempt of `target`; `failures`: its failures in a row now."""
        self.runs.labels(target=target, status=outcome).inc()
        self.run_duration.labels(target=target).observe(seconds)
        if outcome == "committed":
            self.last_success.labels(target=target).set(time.time())
            for op, n in counts.items():
                self.records.labels(target=target, op=op).inc(n)
        self.consecutive_failures.labels(target=target).set(failures)

    def forget_target(self, target: str) -> None:
        """Drop the per-target gauges of a target removed from the config."""
        gauges = (
            self.last_success,
            self.consecutive_failures,
            self.handed_off,
            self.consumed,
            self.delivery_lag,
        )
        for gauge in gauges:
            with contextlib.suppress(KeyError):
                gauge.remove(target)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
