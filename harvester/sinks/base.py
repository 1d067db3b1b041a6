"""The base class of every sink: where a harvest's changelog rows go."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from harvester.sinks.log import ChangeLog
    from harvester.spool import SpoolFile


class ChangeSink(ABC):
    """Takes the rows of finished runs, all or nothing per `send`; raises on failure.

    `start` and `close` do nothing unless a sink holds resources (a process, a connection);
    `with sink:` closes it.
    """

    description: str = "a sink"  # where the changes go, for the user
    # Set when `send` only hands the rows off to a log that a consumer acknowledges later (the
    # continuous Flink pipeline): a run then counts as delivered once its acks say so, not when
    # `send` returns.
    changelog: ChangeLog | None = None

    def start(self) -> None:  # noqa: B027 (a no-op unless a sink holds resources)
        """Get ready now (start a worker, connect) rather than at the first `send`."""

    def validate(self) -> None:  # noqa: B027 (most sinks have nothing to check)
        """Check the sink's own configuration before anything is harvested; raise `ConfigError`."""

    def checked(self) -> None:  # noqa: B027 (most sinks check nothing in the background)
        """Wait for a check of the sink's configuration that `validate` left running (Flink
        planning the statements while the first reads run); raise the `ConfigError` it found."""

    @abstractmethod
    def send(self, spools: Sequence[SpoolFile]) -> None:
        """Deliver every row of `spools`, in order, or raise and deliver nothing durable."""

    def flush(self, timeout: float) -> None:  # noqa: B027 (a no-op where send is the delivery)
        """Wait (at most `timeout` seconds) until what the consumer has taken is committed
        downstream; for sinks with a log, after their runs are acknowledged."""

    def committed_marker(self) -> int | None:
        """For a sink with a log: a counter that grows as its consumer commits; an ack read at
        marker `m` is committed in every downstream sink once the marker passes `m`. None:
        acks are final when they appear."""
        return None

    def problem(self) -> str | None:
        """What keeps the sink from delivering right now (a failed Flink job), or None."""
        return None

    def close(self) -> None:  # noqa: B027 (a no-op unless a sink holds resources)
        """Release what the sink holds; safe to call more than once."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
