"""The daemon behind `harvester run` (docs/daemon.md).

`Daemon` schedules, retries and reports; it drives a `RunBackend` (`HarvestBackend` is the real
one) and hands finished reads to one `Forwarder`; `HttpServer` serves `/healthz` and `/metrics`.
"""

from harvester.daemon.backend import HarvestBackend, ReadResult, RunBackend
from harvester.daemon.daemon import Daemon
from harvester.daemon.delivery import DeliveryWatch
from harvester.daemon.metrics import DaemonMetrics

__all__ = ["Daemon", "DaemonMetrics", "DeliveryWatch", "HarvestBackend", "ReadResult", "RunBackend"]
