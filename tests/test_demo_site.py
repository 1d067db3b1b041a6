"""The demo site: its server, its data in a real Chromium, and its documented generations."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from harvester.browser import open_target
from harvester.cli import main
from harvester.config import BrowserSettings, TargetSettings
from harvester.demo import serve_demo

EXPECTED: dict[str, Any] = json.loads(
    files("harvester").joinpath("demo_site", "expected.json").read_text(encoding="utf-8")
)

# Every record of every store as [key, value] fingerprints: lossy, but deterministic and
# different whenever the demo changes a value. Dates arrive as ISO text through toJSON.
SNAPSHOT_JS = r"""async () => {
  const fingerprint = (root) => {
    const seen = new WeakSet();
    return JSON.stringify(root, (_, v) => {
      if (v === undefined) return "undefined";
      if (typeof v === "bigint") return "bigint:" + v;
      if (typeof v === "number" && (!Number.isFinite(v) || Object.is(v, -0))) return "n:" + v;
      if (v === null || typeof v !== "object") return v;
      if (seen.has(v)) return "[seen]";
      seen.add(v);
      if (v instanceof Map) return ["Map", ...v];
      if (v instanceof Set) return ["Set", ...v];
      if (v instanceof ArrayBuffer) return ["bytes", ...new Uint8Array(v)];
      if (ArrayBuffer.isView(v)) {
        return [v.constructor.name, ...new Uint8Array(v.buffer, v.byteOffset, v.byteLength)];
      }
      if (v instanceof Blob) return ["Blob", v.type, v.size];
      if (v instanceof CryptoKey) return ["CryptoKey", v.algorithm.name, v.extractable];
      if (v instanceof RegExp) return ["RegExp", String(v)];
      const tag = Object.prototype.toString.call(v);
      // Boxed primitives, a boxed BigInt among them, which JSON.stringify refuses.
      if (/^\[object (Number|String|Boolean|BigInt)\]$/.test(tag)) return [tag, String(v)];
      return v;
    });
  };
  const request = (r) => new Promise((ok, ko) => { r.onsuccess = () => ok(r.result);
                                                    r.onerror = () => ko(r.error); });
  const out = {};
  for (const { name, version } of await indexedDB.databases()) {
    const db = await request(indexedDB.open(name));
    out[name] = { version, stores: {} };
    for (const store of db.objectStoreNames) {
      const os = db.transaction(store).objectStore(store);
      const [keys, values] = await Promise.all([request(os.getAllKeys()), request(os.getAll())]);
      out[name].stores[store] = keys.map((k, i) => [fingerprint(k), fingerprint(values[i])]);
    }
    db.close();
  }
  return out;
}"""

# What the lab database must hold, checked in the page with the real types.
TYPES_JS = """async () => {
  const db = await new Promise((ok) => {
    const r = indexedDB.open("lab");
    r.onsuccess = () => ok(r.result);
  });
  const get = (key) => new Promise((ok) => {
    const r = db.transaction("values").objectStore("values").get(key);
    r.onsuccess = () => ok(r.result);
  });
  const tag = (v) => Object.prototype.toString.call(v);
  const key = (await get("cryptokey")).key;
  const cycle = await get("cycle");
  const sparse = await get("sparse-array");
  const shared = await get("shared");
  const mapKeys = [...(await get("map")).keys()];
  const result = {
    undefined: (await get("undefined")) === undefined,
    negativeZero: Object.is(await get("negative-zero"), -0),
    nan: Number.isNaN(await get("nan")),
    bigint: typeof (await get("bigint")),
    invalidDate: Number.isNaN((await get("date-invalid")).getTime()),
    regexp: tag(await get("regexp")),
    mapObjectKey: typeof mapKeys[0],
    set: tag(await get("set")),
    blob: tag(await get("blob")),
    file: tag(await get("file")),
    dataview: tag(await get("dataview")),
    boxed: tag(await get("boxed-number")),
    error: tag(await get("error")),
    cryptoKey: tag(key) + ":" + key.extractable,
    cycle: cycle.self === cycle,
    shared: shared.a === shared.b,
    sparse: sparse.length + ":" + (1 in sparse),
    extraProps: (await get("array-with-props")).label,
    dollar: Object.keys(await get("dollar-keys")).sort().join(","),
    loneSurrogate: (await get("lone-surrogate-high")) === "\\uD800",
  };
  db.close();
  return result;
}"""


def _demo_target(url: str, profile: Path) -> TargetSettings:
    return TargetSettings.model_validate(
        {
            "name": "demo",
            "url": url,
            "schedule": "15m",
            "ready": {"function": "window.demoReady === true || window.demoError !== undefined"},
            "auth": {"profile_dir": profile},
            "limits": {"page_timeout": "60s"},
        }
    )


def _load(
    url: str, profile: Path, chromium_path: Path, *, check_types: bool = False
) -> dict[str, Any]:
    """One browser session on the demo: its summary, every record, and the type checks."""

    async def go() -> dict[str, Any]:
        settings = BrowserSettings(executable_path=chromium_path)
        async with open_target(_demo_target(url, profile), settings) as session:
            page = session.page
            assert await page.evaluate("window.demoError") is None
            return {
                "summary": await page.evaluate("window.demoSummary"),
                "snapshot": await page.evaluate(SNAPSHOT_JS),
                "types": await page.evaluate(TYPES_JS) if check_types else None,
            }

    return asyncio.run(go())


def _counts(snapshot: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        db: {store: len(records) for store, records in info["stores"].items()}
        for db, info in snapshot.items()
    }


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """+I/+U/-D per store between two snapshots, as counts and as the keys touched."""
    result: dict[str, dict[str, Any]] = {}
    for db, info in after.items():
        result[db] = {}
        for store, records in info["stores"].items():
            old = dict(before[db]["stores"][store])
            new = dict(records)
            result[db][store] = {
                "+I": sorted(k for k in new if k not in old),
                "+U": sorted(k for k in new if k in old and old[k] != new[k]),
                "-D": sorted(k for k in old if k not in new),
            }
    return result


@pytest.mark.browser
@pytest.mark.slow
def test_demo_site_data_and_first_generation(tmp_path: Path, chromium_path: Path) -> None:
    profile = tmp_path / "profile"
    with serve_demo(0) as server:
        first = _load(server.url, profile, chromium_path, check_types=True)
        second = _load(server.url, profile, chromium_path)

    snapshot = first["snapshot"]
    expected_dbs = {
        name: {"version": db["version"], "stores": db["stores"]}
        for name, db in EXPECTED["databases"].items()
    }
    assert {
        name: {"version": info["version"], "stores": sorted(info["stores"])}
        for name, info in snapshot.items()
    } == expected_dbs
    assert _counts(snapshot) == EXPECTED["generation_0"]
    assert first["summary"] == {"generation": 0, "counts": EXPECTED["generation_0"]}
    total = sum(sum(stores.values()) for stores in _counts(snapshot).values())
    assert 9_500 <= total <= 10_500

    assert first["types"] == {
        "undefined": True,
        "negativeZero": True,
        "nan": True,
        "bigint": "bigint",
        "invalidDate": True,
        "regexp": "[object RegExp]",
        "mapObjectKey": "object",
        "set": "[object Set]",
        "blob": "[object Blob]",
        "file": "[object File]",
        "dataview": "[object DataView]",
        "boxed": "[object Number]",
        "error": "[object Error]",
        "cryptoKey": "[object CryptoKey]:false",
        "cycle": True,
        "shared": True,
        "sparse": "5:false",
        "extraProps": "extra",
        "dollar": "$,$date,plain",
        "loneSurrogate": True,
    }

    # The reload in a fresh browser on the same profile is generation 1, exactly as documented.
    changes = _changes(snapshot, second["snapshot"])
    counted = {
        db: {store: {op: len(keys) for op, keys in ops.items()} for store, ops in stores.items()}
        for db, stores in changes.items()
    }
    assert counted == EXPECTED["each_generation"]
    assert second["summary"]["generation"] == 1
    orders = changes["shop"]["orders"]
    assert orders["+I"] == sorted(str(k) for k in range(2501, 2506))
    assert orders["+U"] == ["1000", "1001", "1002"]
    assert orders["-D"] == ["1", "2"]
    assert changes["notes"]["notes"] == {"+I": ["641"], "+U": ["1"], "-D": []}
    assert changes["lab"]["values"]["+U"] == ['"bigint-counter"']
    for db, stores in EXPECTED["generation_0"].items():
        for store, count in stores.items():
            ops = EXPECTED["each_generation"][db][store]
            assert _counts(second["snapshot"])[db][store] == count + ops["+I"] - ops["-D"]


def test_demo_server_serves_the_site_with_content_types() -> None:
    with serve_demo(0) as server:
        assert server.url == f"http://127.0.0.1:{server.port}/"
        for path, content_type in [
            ("", "text/html; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("expected.json", "application/json"),
        ]:
            with urllib.request.urlopen(server.url + path) as response:
                assert response.headers["Content-Type"] == content_type
                assert response.read()
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(server.url + "../pyproject.toml")
        assert caught.value.code == 404
        caught.value.close()


def test_demo_serve_on_a_taken_port_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", "--serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert "--port" in err
