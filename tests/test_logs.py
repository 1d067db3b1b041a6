"""The harvester's log: text or JSON lines, secrets masked."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from harvester.config import LogSettings
from harvester.logs import setup_logging
from harvester.redaction import Redactor


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_redaction_covers_message_args_extras_and_exceptions(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(LogSettings(level="debug"), ["hunter2", "zq9x"])
    log = logging.getLogger("harvester.test")
    log.debug("login with %s", "hunter2", extra={"target": "crm-zq9x"})
    try:
        raise ValueError("bad token zq9x")
    except ValueError:
        log.exception("failed")
    err = capsys.readouterr().err
    assert "hunter2" not in err and "zq9x" not in err
    assert "login with ****" in err and "bad token ****" in err


def test_json_lines_carry_extras(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(LogSettings(format="json"), ["s3cret"])
    logging.getLogger("harvester.test").info("run %s", "r1", extra={"target": "s3cret-shop"})
    (line,) = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    assert entry["message"] == "run r1"
    assert (entry["level"], entry["logger"], entry["target"]) == (
        "info",
        "harvester.test",
        "****-shop",
    )
    assert entry["time"].endswith("Z")


def test_setting_up_twice_replaces_the_handler(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(LogSettings(), [])
    setup_logging(LogSettings(level="warning"), [])
    logging.getLogger("harvester.test").info("hidden")
    logging.getLogger("harvester.test").warning("shown")
    assert capsys.readouterr().err.count("shown") == 1


def test_the_longest_secret_wins() -> None:
    assert Redactor(["ab", "abcd"]).redact("xabcdx ab") == "x****x ****"
    assert Redactor([]).redact("plain") == "plain"
