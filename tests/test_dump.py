"""`harvester dump` against the demo site and small pages, in a real Chromium."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import Counter
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from harvester import codec
from harvester.cli import main
from harvester.demo import serve_demo
from tests.support.server import StaticServer

pytestmark = pytest.mark.browser

EXPECTED = json.loads(files("harvester").joinpath("demo_site", "expected.json").read_text())
DEMO_READY = "window.demoReady === true"


def _config(tmp_path: Path, chromium_path: Path, targets: str = "") -> Path:
    config = tmp_path / "harvester.toml"
    config.write_text(
        f'[browser]\nexecutable_path = "{chromium_path}"\n{targets}', encoding="utf-8"
    )
    return config


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_dump_of_the_demo_site_writes_every_database_and_store(
    tmp_path: Path, chromium_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo.jsonl"
    config = _config(tmp_path, chromium_path)
    with serve_demo(0) as server:
        code = main(
            [
                *("dump", server.url, "--config", str(config), "--wait-for-function", DEMO_READY),
                *("--out", str(out), "--batch-size", "700"),
            ]
        )
    err = capsys.readouterr().err
    lines = _lines(out)
    counts = Counter((line["db"], line["store"]) for line in lines)
    expected = {
        (db, store): n
        for db, stores in EXPECTED["generation_0"].items()
        for store, n in stores.items()
    }
    assert {k: v for k, v in expected.items() if v} == dict(counts)
    assert {line["origin"] for line in lines} == {server.url.rstrip("/")}
    assert {line["db_version"] for line in lines} == {1}
    assert all(
        set(line) == {"origin", "db", "db_version", "store", "key", "value"} for line in lines
    )
    # Key and value are typed JSON, embedded as they were read.
    for line in lines[:2000]:
        raw = json.dumps(line["value"], ensure_ascii=False, separators=(",", ":"))
        codec.decode(raw)
    # The demo's non-extractable CryptoKey cannot be read whole: a problem, so exit 1.
    assert code == 1
    assert "CryptoKey is not extractable" in err
    assert f"{sum(expected.values()):,} records from {len(expected)} stores" in err
    for db, store in expected:
        assert f"{db}/{store}" in err


def test_dump_schema_of_the_demo_site(
    tmp_path: Path, chromium_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    config = _config(tmp_path, chromium_path)
    with serve_demo(0) as server:
        code = main(
            [
                *("dump", server.url, "--schema", "--config", str(config)),
                *("--wait-for-function", DEMO_READY),
            ]
        )
    assert code == 0
    schema = json.loads(capsysbinary.readouterr().out)
    assert {db["name"]: db["version"] for db in schema} == {
        name: db["version"] for name, db in EXPECTED["databases"].items()
    }
    for db in schema:
        assert [s["name"] for s in db["stores"]] == sorted(
            EXPECTED["databases"][db["name"]]["stores"]
        )
        for store in db["stores"]:
            assert store["count"] == EXPECTED["generation_0"][db["name"]][store["name"]]
            assert set(store) == {"name", "key_path", "auto_increment", "count", "indexes"}
    indexes = {
        (db["name"], s["name"]): s["indexes"] for db in schema for s in db["stores"] if s["indexes"]
    }
    assert indexes  # the demo has indexes: each with name, key path, unique, multi_entry
    for listed in indexes.values():
        for index in listed:
            assert set(index) == {"name", "key_path", "unique", "multi_entry"}


PAGE = """<!doctype html><meta charset="utf-8"><script>
const r = indexedDB.open("app", 1);
r.onupgradeneeded = () => {
  r.result.createObjectStore("a");
  r.result.createObjectStore("b", { keyPath: "id" });
};
r.onsuccess = () => {
  const tx = r.result.transaction(["a", "b"], "readwrite");
  for (let i = 0; i < 30; i++) tx.objectStore("a").put({ i, s: "\\ud800é" }, i);
  tx.objectStore("b").put({ id: "x" });
  tx.oncomplete = () => {
    r.result.close();
    const done = Object.assign(document.createElement("p"), { id: "done", textContent: "ok" });
    document.body.append(done);
  };
};
</script><body></body>"""


def test_dump_target_from_the_config_with_filters(
    tmp_path: Path, chromium_path: Path, static_server: StaticServer
) -> None:
    url = static_server.add("app.html", PAGE)
    config = _config(
        tmp_path,
        chromium_path,
        f'\n[[targets]]\nname = "app"\nurl = "{url}"\nschedule = "1h"\n'
        '[targets.ready]\nselector = "#done"\n',
    )
    out = tmp_path / "out.jsonl"
    code = main(
        [
            *("dump", "--target", "app", "--config", str(config), "--out", str(out)),
            *("--db", "ap*", "--store", "app/a", "--batch-size", "7", "--consistency", "snapshot"),
        ]
    )
    assert code == 0
    lines = _lines(out)
    assert [line["key"] for line in lines] == list(range(30))
    assert {line["store"] for line in lines} == {"a"}
    # Lone surrogates come out escaped, so the file is valid UTF-8 JSON.
    assert '"s":"\\ud800é"' in out.read_text(encoding="utf-8")
    assert lines[0]["value"] == {"i": 0, "s": "\ud800é"}


def test_dump_to_stdout_waits_for_selector_and_settles(
    static_server: StaticServer,
    tmp_path: Path,
    chromium_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    url = static_server.add("app.html", PAGE)
    config = _config(tmp_path, chromium_path)
    code = main(
        ["dump", url, "--config", str(config), "--wait-for-selector", "#done", "--settle-ms", "50"]
    )
    captured = capsysbinary.readouterr()
    assert code == 0
    lines = [json.loads(line) for line in captured.out.decode().splitlines()]
    assert len(lines) == 31
    assert lines[-1] == {
        "origin": static_server.origin,
        "db": "app",
        "db_version": 1,
        "store": "b",
        "key": "x",
        "value": {"id": "x"},
    }
    assert b"31 records from 2 stores" in captured.err


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_url_exits_2_with_the_error(tmp_path: Path, chromium_path: Path) -> None:
    config = _config(tmp_path, chromium_path)
    url = f"http://127.0.0.1:{_closed_port()}/"
    done = subprocess.run(
        [sys.executable, "-m", "harvester", "dump", url, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "ERR_CONNECTION_REFUSED" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dump"], "give a URL or --target NAME"),
        (["dump", "http://x.example", "--target", "t"], "give a URL or --target NAME"),
        (["dump", "ftp://x.example"], "URL 'ftp://x.example'"),
    ],
)
def test_bad_arguments_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, Path(sys.executable))
    assert main([*argv, "--config", str(config)]) == 2
    assert message in capsys.readouterr().err


def test_batch_size_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["dump", "http://x.example", "--batch-size", "0"])
    assert exit_.value.code == 2
    assert "0 is not above 0" in capsys.readouterr().err
