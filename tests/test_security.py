"""Security pass (issue 8): hostile strings, the HTTP endpoint, secrets, file modes, paths.

The pages harvested are not ours: every string in them (values, keys, database and store names)
may be an attack on whoever looks at the results. Secrets from the config must not leak into
anything the harvester writes, and what it writes is private to its user.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import sync_playwright

from harvester.browser import launch_args
from harvester.cli import main
from harvester.commands._inspector import inspector_handler
from harvester.config import Settings, load_settings, secret_values
from harvester.daemon import Daemon, HarvestBackend
from harvester.daemon.http import Handler, HttpServer, Request
from harvester.errors import ConfigError
from harvester.harvest import harvest_target
from harvester.inspect.report import render_report
from harvester.sinks import JsonLinesSink
from harvester.spool import spool_path
from harvester.state import StateDB, new_run_id, state_db_path
from tests.support.server import StaticServer, free_port

IMG = "<img src=x onerror=window.pwned=1>"
SCRIPT = "</script><script>window.pwned=2</script>"
# A terminal escape (sets the window title) and a colour: `show`/`diff` must not pass them raw.
TERMINAL = "\x1b]0;pwned\x07\x1b[31mred"

# Databases and stores named by the attack strings, keyed by them, holding them; a record that
# changes on every load so that a diff between two runs shows them too.
HOSTILE_APP = """
const IMG = %s, SCRIPT = %s, TERMINAL = %s;
function fill(name, stores) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(name, 1);
    open.onupgradeneeded = () => { for (const s of stores) open.result.createObjectStore(s); };
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction(stores, "readwrite");
      for (const s of stores) {
        const store = tx.objectStore(s);
        store.put({html: IMG, script: SCRIPT, terminal: TERMINAL}, IMG);
        store.put([IMG, SCRIPT], SCRIPT);
        store.put({changing: IMG + Date.now()}, "changing");
        store.put(SCRIPT, IMG + Date.now());
      }
      tx.oncomplete = () => { db.close(); resolve(); };
      tx.onerror = () => reject(tx.error);
    };
  });
}
Promise.all([fill(IMG, [SCRIPT, IMG]), fill(SCRIPT, ["plain"])]).then(() => {
  window.harvestReady = true;
});
"""


def _write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "harvester.toml"
    path.write_text(text)
    return path


def _hostile_settings(tmp_path: Path, server: StaticServer) -> Settings:
    server.add("app.js", HOSTILE_APP % (json.dumps(IMG), json.dumps(SCRIPT), json.dumps(TERMINAL)))
    url = server.add("index.html", '<!doctype html><script src="app.js"></script>')
    config = _write_config(
        tmp_path / "conf",
        f"""
[state]
dir = "state"
data_dir = "data"

[http]
port = 0

[[targets]]
name = "hostile"
url = "{url}"
schedule = "1h"

[targets.ready]
function = "window.harvestReady === true"
""",
    )
    return load_settings(config)


def _harvest(settings: Settings, state: StateDB, sink: JsonLinesSink) -> str:
    summary = asyncio.run(
        harvest_target(settings=settings, target=settings.target("hostile"), state=state, sink=sink)
    )
    assert summary.run.status == "committed", summary.run.error
    return summary.run.id


@pytest.mark.browser
def test_hostile_strings_are_escaped_in_show_diff_the_daemon_inspector_and_report(
    tmp_path: Path,
    static_server: StaticServer,
    chromium_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _hostile_settings(tmp_path, static_server)
    sink = JsonLinesSink(settings.state.data_dir / "changes-jsonl")
    with StateDB.open(settings.state.dir) as state:
        first = _harvest(settings, state, sink)
        second = _harvest(settings, state, sink)
        stores = {(s.db, s.store) for s in state.list_stores()}
        assert stores == {(IMG, SCRIPT), (IMG, IMG), (SCRIPT, "plain")}

        # The terminal commands: no raw escape or bell reaches the terminal, in either format.
        state_arg = ["--state", str(settings.state.dir)]
        capsys.readouterr()
        for argv in (
            ["show", "hostile", IMG, SCRIPT, *state_arg],
            ["show", "hostile", SCRIPT, "plain", *state_arg],
            ["diff", first, second, *state_arg],
        ):
            for fmt in ("table", "json"):
                assert main([*argv, "--format", fmt]) == 0
                out = capsys.readouterr().out
                assert "\x1b" not in out and "\x07" not in out, (argv, fmt)
                if fmt == "json":  # a table may cut long cells to fit the terminal
                    assert "window.pwned" in out  # the strings are shown, only made harmless

        daemon = Daemon(
            settings,
            HarvestBackend(settings, state, sink),
            secrets=secret_values,
            report=_report_of(settings),
            inspector=_inspector_of(settings),
        )
        assert daemon.http is not None
        daemon.http.start()
        try:
            base = daemon.http.url
            # The inspector's pages (no script at all) and the single-file report (its own one).
            paths = {"/": 0, "/report": 1, "/target/hostile": 0}
            for db, name in sorted(stores):
                paths[
                    "/target/hostile/store/" + quote(db, safe="") + "/" + quote(name, safe="")
                ] = 0
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium_path, args=launch_args()
                )
                try:
                    page = browser.new_page()
                    dialogs: list[str] = []
                    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                    found = {}
                    for path in paths:
                        response = page.goto(base + path)
                        assert response is not None and response.status == 200, path
                        assert response.headers["content-type"].startswith("text/html")
                        page.wait_for_load_state("load")
                        found[path] = page.evaluate(
                            """() => ({
                                pwned: window.pwned === undefined ? null : window.pwned,
                                injectedImages: document.querySelectorAll('img[src="x"]').length,
                                scripts: document.scripts.length,
                                text: document.body.innerText,
                            })"""
                        )
                finally:
                    browser.close()
        finally:
            daemon.http.stop()
    assert dialogs == []
    for path, scripts in paths.items():
        seen = found[path]
        assert seen["pwned"] is None, path
        # Escaped, not merely blocked by the CSP: no element was made of a harvested string.
        assert seen["injectedImages"] == 0, path
        assert seen["scripts"] == scripts, path
    for path in ("/report", "/target/hostile"):
        assert IMG in found[path]["text"] and SCRIPT in found[path]["text"], path


# ---- the HTTP endpoint ------------------------------------------------------------------------


@pytest.fixture
def daemon_http(tmp_path: Path) -> Iterator[HttpServer]:
    """The daemon's own endpoint (its routes, the report on `/` included) on a free port."""
    config = _write_config(
        tmp_path,
        """
[http]
port = 0

[[targets]]
name = "t"
url = "http://127.0.0.1:9/"
schedule = "1h"
""",
    )
    settings = load_settings(config)
    with StateDB.open(settings.state.dir) as state:
        daemon = Daemon(
            settings,
            HarvestBackend(settings, state, JsonLinesSink(tmp_path)),
            report=_report_of(settings),
            inspector=_inspector_of(settings),
        )
        assert daemon.http is not None
        daemon.http.start()
        try:
            yield daemon.http
        finally:
            daemon.http.stop()


def _report_of(settings: Settings) -> Callable[[], str]:
    """The report renderer the composition root gives the daemon (`harvester run`)."""
    return functools.partial(render_report, state_db_path(settings.state.dir))


def _inspector_of(settings: Settings) -> Handler:
    """The live inspector the composition root gives the daemon (`harvester run`)."""
    return inspector_handler(state_db_path(settings.state.dir))


def _ask(
    server: HttpServer, method: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        reply = conn.getresponse()
        reply.read()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}
    finally:
        conn.close()


def test_endpoint_binds_loopback_by_default(daemon_http: HttpServer) -> None:
    assert Settings.model_validate({}).http.bind == "127.0.0.1"
    assert daemon_http.bind == "127.0.0.1"
    # Not reachable on another address of the machine: only the loopback socket is listening.
    assert daemon_http._server is not None
    assert daemon_http._server.server_address[0] == "127.0.0.1"


@pytest.mark.parametrize("path", ["/", "/report", "/healthz", "/metrics", "/api/v1/changes"])
def test_endpoint_answers_get_head_only_without_cors(daemon_http: HttpServer, path: str) -> None:
    host = {"Host": f"127.0.0.1:{daemon_http.port}", "Origin": "http://evil.example"}
    for method in ("GET", "HEAD"):
        status, headers = _ask(daemon_http, method, path, host)
        # /healthz is 503 here: the daemon's scheduler is not running, only its endpoint.
        assert status in (200, 503), (method, path)
        assert not [h for h in headers if h.startswith("access-control-")]
        assert headers["x-content-type-options"] == "nosniff"
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        status, headers = _ask(daemon_http, method, path, host)
        assert status == 405, (method, path)
        assert headers["allow"] == "GET, HEAD"
        assert not [h for h in headers if h.startswith("access-control-")]


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "evil.example", "127.0.0.1:{other}", "localhost.evil.example:{port}"],
)
def test_endpoint_refuses_foreign_host_headers(daemon_http: HttpServer, host: str) -> None:
    value = host.format(port=daemon_http.port, other=daemon_http.port + 1)
    for path in ("/", "/healthz"):
        assert _ask(daemon_http, "GET", path, {"Host": value})[0] == 421


# ---- secrets ----------------------------------------------------------------------------------

SECRET = "Sx7-planted-secret-Qk29"

LOGIN = """<!doctype html><form><input id="pw" type="password"></form>
<script>window.loginReady = true;</script>"""
# A database named to try a path escape: it must never become a path component of a sink.
APP = """<!doctype html><script>
const open = indexedDB.open("../../escape", 1);
open.onupgradeneeded = () => open.result.createObjectStore("a/../../b");
open.onsuccess = () => {
  const tx = open.result.transaction("a/../../b", "readwrite");
  tx.objectStore("a/../../b").put({n: 1}, "k");
  tx.oncomplete = () => { window.appReady = true; };
};
</script>"""


@dataclass(frozen=True)
class SecretRun:
    folder: Path
    settings: Settings
    outputs: dict[str, str]  # what each command printed, stdout and stderr


def _cli(folder: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HARVEST_TOKEN=SECRET)
    return subprocess.run(
        [sys.executable, "-m", "harvester", *argv, "--config", str(folder / "harvester.toml")],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretRun]:
    """check-config, a harvest whose login fails and one that succeeds through Flink, the
    report, runs: with a secret in an auth step's URL, a fill value and a Flink statement."""
    folder = tmp_path_factory.mktemp("secrets")
    www = folder / "www"
    www.mkdir()
    server = StaticServer(www)
    login, app = server.add("login.html", LOGIN), server.add("app.html", APP)
    refused = f"http://127.0.0.1:{free_port()}/login?token=${{secret:HARVEST_TOKEN}}"
    _write_config(
        folder,
        f"""
[state]
dir = "state"
data_dir = "data"

[log]
level = "debug"

[[flink.statements]]
sql = "CREATE TABLE audit (store STRING) WITH ('connector' = 'blackhole')"
[[flink.statements]]
sql = "INSERT INTO audit SELECT store FROM change_log WHERE store <> '${{secret:HARVEST_TOKEN}}'"

[[targets]]
name = "broken"
url = "{app}"
schedule = "1h"
[targets.limits]
page_timeout = "5s"
[[targets.auth.steps]]
action = "goto"
url = "{refused}"

[[targets]]
name = "good"
url = "{app}"
schedule = "1h"
[targets.ready]
function = "window.appReady === true"
[[targets.auth.steps]]
action = "goto"
url = "{login}"
[[targets.auth.steps]]
action = "fill"
selector = "#pw"
value = "${{secret:HARVEST_TOKEN}}"
""",
    )
    outputs: dict[str, str] = {}
    try:
        for name, argv, code in (
            ("check-config", ["check-config"], 0),
            ("harvest broken", ["harvest", "broken", "--sink", "jsonl"], 1),
            ("harvest good", ["harvest", "good"], 0),
            ("runs", ["runs", "--format", "json"], 0),
            ("report", ["report", "--out", str(folder / "report.html")], 0),
        ):
            done = _cli(folder, *argv)
            outputs[name] = done.stdout + done.stderr
            assert done.returncode == code, (name, outputs[name])
    finally:
        server.close()
    os.environ["HARVEST_TOKEN"] = SECRET
    try:
        settings = load_settings(folder / "harvester.toml")
    finally:
        del os.environ["HARVEST_TOKEN"]
    yield SecretRun(folder, settings, outputs)


@pytest.mark.browser
@pytest.mark.flink
@pytest.mark.slow
def test_secrets_appear_in_no_output_log_record_or_file(secret_run: SecretRun) -> None:
    folder, outputs = secret_run.folder, secret_run.outputs
    # The failing step was really tried with the secret in its URL, and its error recorded.
    assert "ERR_CONNECTION_REFUSED" in outputs["harvest broken"]
    with StateDB.open(secret_run.settings.state.dir, readonly=True) as state:
        broken = state.list_runs(target="broken")
        good = state.list_runs(target="good")
    assert [r.status for r in broken] == ["failed"] and broken[0].error
    assert "token=****" in broken[0].error
    assert [r.status for r in good] == ["committed"]

    for name, text in outputs.items():
        assert SECRET not in text, name
    # Every file written: the state DB with its WAL, logs (Flink's too), spools, sinks, report.
    checked = []
    for path in folder.rglob("*"):
        if path.is_file() and path.parent.name != "www":
            assert SECRET.encode() not in path.read_bytes(), path
            checked.append(path.relative_to(folder).as_posix())
    assert "state/state.db" in checked and "report.html" in checked
    assert any(p.startswith("state/flink-logs/") for p in checked)
    assert any(p.startswith("data/changes/") for p in checked)

    # The report served by the daemon masks the secret as well.
    with StateDB.open(secret_run.settings.state.dir) as state:
        daemon = Daemon(
            secret_run.settings,
            HarvestBackend(secret_run.settings, state, JsonLinesSink(folder)),
            secrets=lambda _s: [SECRET],
            serve_http=False,
            report=_report_of(secret_run.settings),
            inspector=_inspector_of(secret_run.settings),
        )
        assert SECRET not in daemon.report(None).body.decode()  # type: ignore[arg-type]
        for path in ("/", "/target/broken", "/target/good"):
            page = daemon.inspect(Request("GET", path, {}, {}))
            assert page.status == 200 and SECRET not in page.body.decode(), path


def test_run_errors_are_masked_in_the_state_db(tmp_path: Path) -> None:
    with StateDB.open(tmp_path, secrets=[SECRET]) as state:
        run = state.start_run("t")
        state.fail_run(run, f"goto http://h/login?token={SECRET} failed")
        assert state.get_run(run).error == "goto http://h/login?token=**** failed"  # type: ignore[union-attr]


def test_secrets_of_a_reloaded_config_are_masked_in_the_log_and_run_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harvester.config import LogSettings
    from harvester.logs import setup_logging
    from harvester.redaction import remember_secrets

    logger = logging.getLogger("harvester.test_security")
    setup_logging(LogSettings(), [SECRET])
    try:
        with StateDB.open(tmp_path) as state:
            # As the daemon does on SIGHUP with a config that brings a new secret.
            remember_secrets(["new-" + SECRET[::-1]])
            logger.error("old %s new %s", SECRET, "new-" + SECRET[::-1])
            run = state.start_run("t")
            state.fail_run(run, f"login new-{SECRET[::-1]} refused")
            assert state.get_run(run).error == "login **** refused"  # type: ignore[union-attr]
        assert "old **** new ****" in capsys.readouterr().err
    finally:
        setup_logging(LogSettings(), [])


# ---- file modes ---------------------------------------------------------------------------------


def _loose(root: Path) -> list[str]:
    """Paths under `root` (itself included) readable or writable by group or others."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        if stat.S_IMODE(mode) & 0o077:
            found.append(f"{path.relative_to(root.parent)} {stat.S_IMODE(mode):o}")
    return found


@pytest.mark.browser
@pytest.mark.flink
@pytest.mark.slow
def test_state_and_flink_data_are_private(secret_run: SecretRun) -> None:
    state_dir, data_dir = secret_run.settings.state.dir, secret_run.settings.state.data_dir
    names = {p.name for p in state_dir.iterdir()}
    assert {"state.db", "harvester.lock", "spool", "flink-logs"} <= names
    assert _loose(state_dir) == []
    assert (data_dir / "changes").is_dir()
    assert _loose(data_dir) == []


def test_jsonl_sink_and_state_files_are_private(tmp_path: Path) -> None:
    from harvester.spool import SpoolWriter

    with StateDB.open(tmp_path / "state") as state:
        run = state.start_run("t")
        writer = SpoolWriter(state.spool_dir, run_id=run, target="t", origin="http://x")
        spool = writer.finish()
        (tmp_path / "state" / "spool" / "keep.part").touch(mode=0o600)
        JsonLinesSink(tmp_path / "data" / "changes-jsonl").send([spool])
        assert (tmp_path / "data" / "changes-jsonl" / "changes.jsonl").exists()
        assert _loose(tmp_path / "state") == []
        assert _loose(tmp_path / "data") == []


# ---- paths --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "a\\b", "a\x00b", ""])
def test_target_names_cannot_leave_their_folders(tmp_path: Path, name: str) -> None:
    config = _write_config(
        tmp_path,
        f'[[targets]]\nname = {json.dumps(name)}\nurl = "http://127.0.0.1:9/"\nschedule = "1h"\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "targets[0].name" in str(caught.value.problems)


@pytest.mark.parametrize("target", ["../../etc/x", "a/b", "..", "a\x00b", "ü" * 100])
def test_run_ids_are_safe_file_names(tmp_path: Path, target: str) -> None:
    run_id = new_run_id(target)
    path = spool_path(tmp_path, run_id)
    # One plain path component: never a separator, a NUL, "." or "..".
    assert "/" not in run_id and "\x00" not in run_id and run_id not in {".", ".."}
    assert path.parent == tmp_path and path.resolve().parent == tmp_path.resolve()


@pytest.mark.browser
@pytest.mark.flink
@pytest.mark.slow
def test_page_names_never_become_sink_paths(secret_run: SecretRun) -> None:
    folder = secret_run.folder
    data_dir = secret_run.settings.state.data_dir
    with StateDB.open(secret_run.settings.state.dir, readonly=True) as state:
        assert {(s.db, s.store) for s in state.list_stores()} == {("../../escape", "a/../../b")}
    # Flink partitions by target (a checked name) and date only; nothing named after the page.
    for path in data_dir.rglob("*"):
        parts = path.relative_to(data_dir).parts
        sinks = {"changes", "run_stats", "schema_log", "changes-jsonl", ".harvester.lock"}
        assert parts[0] in sinks, path
        assert all(p.startswith(("target=", "dt=")) for p in parts[1:-1]), path
    assert not (folder.parent / "escape").exists() and not (folder / "b").exists()
