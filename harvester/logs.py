"""The harvester's own log: text or JSON lines on stderr, with secret values masked."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from harvester.settings import MASK, LogSettings

# Attributes every LogRecord has; anything else was passed with `extra=` and belongs in the output.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class RedactSecrets(logging.Filter):
    """Replaces every secret value in a record with `****` before any handler formats it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Mask `secrets` too (a reloaded config may bring new ones; old ones stay masked)."""
        self._values |= {s for s in secrets if s}
        # Longest first, so that a secret containing another is masked whole.
        values = sorted(self._values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def redact(self, text: str) -> str:
        """`text` with every secret value replaced by `****`."""
        return self._pattern.sub(MASK, text) if self._pattern else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, `extra=` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler setup_logging installs, so that a second call replaces it."""


# The secrets setup_logging was given: errors the CLI prints go to stderr outside the log.
_redact_output = RedactSecrets(())


def redact(text: str) -> str:
    """`text` with the secrets known to this process's log masked (none before setup_logging)."""
    return _redact_output.redact(text)


def remember_secrets(secrets: Iterable[str]) -> None:
    """Mask `secrets` in the log and in `redact` from now on, besides those known before."""
    _redact_output.add(secrets)


def setup_logging(log: LogSettings, secrets: Iterable[str] = ()) -> None:
    """Send the root log to stderr in `log.format` at `log.level`, masking `secrets`."""
    global _redact_output
    _redact_output = RedactSecrets(secrets)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(sys.stderr)
    if log.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_redact_output)
    root.addHandler(handler)
    root.setLevel(log.level.upper())
