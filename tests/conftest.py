"""Shared fixtures: a static HTTP server on 127.0.0.1, a real Chromium, a clean environment,
the settings of a written test config and its state DB."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from harvester.config import BrowserSettings, Settings, load_settings
from harvester.state import StateDB
from tests.support.configs import write_config
from tests.support.server import StaticServer


@pytest.fixture(scope="session", autouse=True)
def sigint_raises() -> None:
    """Ctrl-C raises KeyboardInterrupt here and ends the commands the tests start.

    A test run started as a background job of a shell without job control inherits SIGINT
    ignored, and Python then installs no handler; an ignored signal stays ignored across exec,
    so the Ctrl-C tests (and the commands they start) would never see theirs. Run serially, an
    earlier test's asyncio signal handler happened to restore it; on two workers, not always.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[StaticServer]:
    root = tmp_path / "www"
    root.mkdir()
    server = StaticServer(root)
    yield server
    server.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(write_config(tmp_path))


@pytest.fixture
def state(settings: Settings) -> Iterator[StateDB]:
    db = StateDB.open(settings.state.dir)
    yield db
    db.close()


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """The Chromium the tests drive: a missing browser fails the tests, never skips them."""
    from harvester.browser import find_chromium

    return find_chromium(None)


@pytest.fixture
def chromium(chromium_path: Path) -> BrowserSettings:
    """Browser settings that drive the tests' Chromium."""
    return BrowserSettings(executable_path=chromium_path)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own HARVESTER_* variables must not change the config a test loads."""
    for name in list(os.environ):
        if name.startswith("HARVESTER_"):
            monkeypatch.delenv(name)
