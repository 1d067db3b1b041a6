"""Masking secret values in text: the one place that knows the mask and the process's secrets."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "****"


class Redactor:
    """Replaces every known secret value in a text with `MASK`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    @property
    def active(self) -> bool:
        """Whether there is any secret to mask."""
        return self._pattern is not None

    def add(self, secrets: Iterable[str]) -> None:
        """Mask `secrets` too (a reloaded config may bring new ones; old ones stay masked)."""
        self._values |= {s for s in secrets if s}
        # Longest first, so that a secret containing another is masked whole.
        values = sorted(self._values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def redact(self, text: str) -> str:
        """`text` with every secret value replaced by `MASK`."""
        return self._pattern.sub(MASK, text) if self._pattern else text


# The secrets this process was told of (by setup_logging or a daemon's reload): the CLI's error
# lines and the state DB's run errors are masked with them too.
_process = Redactor()


def reset_process_secrets(secrets: Iterable[str]) -> Redactor:
    """Forget the process's secrets and know `secrets` instead; returns the new redactor."""
    global _process
    _process = Redactor(secrets)
    return _process


def redact(text: str) -> str:
    """`text` with the secrets known to this process masked."""
    return _process.redact(text)


def remember_secrets(secrets: Iterable[str]) -> None:
    """Mask `secrets` in `redact` (and the log) from now on, besides those known before."""
    _process.add(secrets)
