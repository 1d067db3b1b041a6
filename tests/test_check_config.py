"""`harvester check-config` through the real CLI entry point."""

from __future__ import annotations

import json
import sqlite3
import tomllib
from pathlib import Path

import pytest

from harvester.cli import main

REPO = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.mark.parametrize("name", ["harvester.toml", "demo.toml"])
def test_the_shipped_configs_are_valid(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(REPO / "config" / name)]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed["targets"]


def test_the_demo_config_keeps_everything_under_demo_state(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(["check-config", "--config", str(REPO / "config" / "demo.toml"), "--format", "json"])
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    (demo,) = data["targets"]
    assert (demo["name"], demo["url"], demo["schedule"]) == ("demo", "http://127.0.0.1:8799/", "1m")
    assert demo["ready"]["function"] == "window.demoReady === true"
    demo_state = REPO / "demo-state"
    for path in (data["state"]["dir"], data["state"]["data_dir"], demo["auth"]["profile_dir"]):
        assert Path(path).is_relative_to(demo_state)


def test_the_config_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "harvester.toml"
    config.write_text('[log]\nlevel = "debug"\n', encoding="utf-8")
    monkeypatch.setenv("HARVESTER_CONFIG", str(config))
    assert main(["check-config", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["log"]["level"] == "debug"


def test_secrets_are_masked_in_both_formats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "PASSWORD").write_text("hunter2\n", encoding="utf-8")
    monkeypatch.setenv("API_KEY", "key-0042")
    config = tmp_path / "harvester.toml"
    config.write_text(
        """
        [[targets]]
        name = "crm"
        url = "https://crm.example.com/?key=${secret:API_KEY}"
        schedule = "15m"
        [targets.auth]
        steps = [{action = "fill", selector = "#pw", value = "${secret:PASSWORD}"}]
        """,
        encoding="utf-8",
    )
    for format in ("toml", "json"):
        assert main(["check-config", "--config", str(config), "--format", format]) == 0
        out = capsys.readouterr().out
        assert "hunter2" not in out and "key-0042" not in out
        assert "${secret:PASSWORD}" in out and "${secret:API_KEY}" in out


def test_a_bad_config_exits_2_with_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        """
        [[targets]]
        name = "a"
        schedule = "every tuesday"
        colour = "red"
        [targets.limits]
        batch_size = -1
        """,
        encoding="utf-8",
    )
    assert main(["check-config", "--config", str(config)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 4
    assert all(line.startswith(f"config error: {config}: targets[0].") for line in lines)
    for where in ("url", "schedule", "colour", "limits.batch_size"):
        assert any(
            line.startswith(f"config error: {config}: targets[0].{where}: ") for line in lines
        )


def test_a_removed_key_exits_2_naming_its_replacement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "old.toml"
    config.write_text("[browser]\nmax_concurrent = 4\n", encoding="utf-8")
    assert main(["check-config", "--config", str(config), "--no-flink"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"config error: {config}: browser.max_concurrent: removed; "
        "use daemon.max_concurrent_harvests"
    ]


def test_a_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(tmp_path / "none.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


# `http.port = 0`: the daemon (`run`, below) listens on a free port. On the default one, 8787,
# it would exit 2 with "http: cannot listen on 127.0.0.1:8787" instead, whenever another
# daemon has it: a second test run in parallel, or a harvester someone runs on this machine.
BROKEN_STATEMENTS = """
[state]
dir = "state"

[http]
port = 0

[[flink.statements]]
sql = "CREATE TABLE ok (store STRING) WITH ('connector' = 'blackhole')"

[[flink.statements]]
sql = "INSERT INTO ok SELEC store FROM change_log"

[[flink.statements]]
sql = "INSERT INTO nowhere SELECT store FROM change_log"

[[flink.statements]]
sql = "INSERT INTO ok SELECT store FROM change_log"

[[targets]]
name = "a"
url = "http://127.0.0.1:9/"
schedule = "1h"
"""


@pytest.mark.flink
def test_flink_statements_that_do_not_parse_or_plan_are_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "statements.toml"
    config.write_text(BROKEN_STATEMENTS, encoding="utf-8")

    code = main(["check-config", "--config", str(config)])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"config error: {config}: flink.statements[1]: ")
    assert "SQL parse failed" in lines[0]
    assert lines[1].startswith(f"config error: {config}: flink.statements[2]: ")
    assert "nowhere" in lines[1]

    # A harvest and the daemon stop with the same errors (Flink plans the statements while the
    # first reads run), having sent and committed nothing.
    for command in (["harvest", "--config", str(config), "a"], ["run", "--config", str(config)]):
        code = main(command)
        err = capsys.readouterr().err
        assert code == 2, err
        assert f"{config}: flink.statements[1]: " in err, err
        assert f"{config}: flink.statements[2]: " in err, err
    with sqlite3.connect(tmp_path / "state" / "state.db") as connection:
        statuses = connection.execute("SELECT status FROM runs").fetchall()
        assert ("committed",) not in statuses
    assert not list((tmp_path / "state" / "flink-log").glob("*.jsonl"))

    # --no-flink checks the rest without starting a JVM.
    assert main(["check-config", "--config", str(config), "--no-flink"]) == 0


READY_FUNCTIONS = """
[[targets]]
name = "typo"
url = "http://127.0.0.1:9/"
schedule = "1h"
[targets.ready]
function = "window.appReady === "

[[targets]]
name = "fine"
url = "http://127.0.0.1:9/"
schedule = "1h"
[targets.ready]
function = "async () => (await fetch('/ready')).ok // a comment at the end"

[[targets]]
name = "unclosed"
url = "http://127.0.0.1:9/"
schedule = "1h"
[targets.ready]
function = "() => { return window.${secret:READY_FLAG}"
"""


def test_a_ready_function_that_does_not_compile_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("READY_FLAG", "hunter2 x")
    config = tmp_path / "ready.toml"
    config.write_text(READY_FUNCTIONS, encoding="utf-8")
    assert main(["check-config", "--config", str(config), "--no-flink"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 2, lines
    typo, unclosed = lines
    assert typo == (
        f"config error: {config}: targets[0].ready.function: JavaScript syntax error: "
        "Unexpected token ')'; expected a JavaScript expression or function"
    )
    # V8 names the token it stopped at, here a piece of the secret: left out.
    assert unclosed == (
        f"config error: {config}: targets[2].ready.function: JavaScript syntax error: "
        "Unexpected identifier; expected a JavaScript expression or function"
    )
    assert "hunter2" not in captured.err

    fixed = READY_FUNCTIONS.replace("appReady === ", "appReady === true").replace(
        "${secret:READY_FLAG}", "ready }"
    )
    config.write_text(fixed, encoding="utf-8")
    assert main(["check-config", "--config", str(config), "--no-flink"]) == 0


def test_targets_without_a_profile_or_storage_state_get_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state.json").write_text('{"cookies": [], "origins": []}', encoding="utf-8")
    config = tmp_path / "harvester.toml"
    targets = [
        ("fresh", ""),
        ("kept", 'profile_dir = "profile"'),
        ("given", 'storage_state = "state.json"'),
    ]
    config.write_text(
        "".join(
            f'[[targets]]\nname = "{name}"\nurl = "http://127.0.0.1:9/"\nschedule = "1h"\n'
            f"[targets.auth]\n{auth}\n"
            for name, auth in targets
        ),
        encoding="utf-8",
    )
    assert main(["check-config", "--config", str(config), "--no-flink"]) == 0
    captured = capsys.readouterr()
    assert tomllib.loads(captured.out)["targets"]
    assert captured.err.splitlines() == [
        "note: targets[0] (fresh): no auth.profile_dir or auth.storage_state, so every harvest "
        "starts from an empty IndexedDB (what the page stores on a first visit)"
    ]


def test_without_node_the_ready_functions_are_noted_as_unchecked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("READY_FLAG", "flag")
    monkeypatch.setenv("PLAYWRIGHT_NODEJS_PATH", str(tmp_path / "no-node"))
    monkeypatch.setenv("PATH", str(tmp_path))
    config = tmp_path / "ready.toml"
    config.write_text(READY_FUNCTIONS, encoding="utf-8")
    assert main(["check-config", "--config", str(config), "--no-flink"]) == 0
    assert "note: ready.function not checked: Node.js not found" in capsys.readouterr().err
