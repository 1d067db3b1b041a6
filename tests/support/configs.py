"""A minimal config with one target, `app`, and the shop page the harvest tests serve."""

from __future__ import annotations

from pathlib import Path

from harvester.cli import main


def write_config(folder: Path, url: str = "http://127.0.0.1:9/", extra: str = "") -> Path:
    """`folder/harvester.toml`: state under `folder`, target `app` at `url`, then `extra`."""
    path = folder / "harvester.toml"
    path.write_text(
        f"""
[state]
dir = "state"
data_dir = "data"

[[targets]]
name = "app"
url = "{url}"
schedule = "15m"
{extra}
""",
        encoding="utf-8",
    )
    return path


SHOP_PAGE = """<!doctype html><meta charset="utf-8"><title>shop</title>
<script>
// ?step=N: the page's data after N rounds of edits. Each load rewrites the stores whole.
const step = Number(new URLSearchParams(location.search).get("step") || 0);
function records() {
  const orders = new Map();
  for (let n = 1; n <= 20; n++) orders.set(n, {id: n, total: n * 10, when: new Date(86400000 * n)});
  if (step >= 1) {
    for (const n of [21, 22, 23]) orders.set(n, {id: n, total: 1, tags: new Set(["new"])});
    orders.get(2).total = -1;
    orders.get(5).when = new Date(0);
    orders.delete(9);
  }
  return orders;
}
const open = indexedDB.open("shop", 1);
open.onupgradeneeded = () => {
  open.result.createObjectStore("orders", {keyPath: "id"}).createIndex("by_total", "total");
  open.result.createObjectStore("notes");
};
open.onsuccess = () => {
  const tx = open.result.transaction(["orders", "notes"], "readwrite");
  const orders = tx.objectStore("orders");
  orders.clear();
  for (const value of records().values()) orders.put(value);
  tx.objectStore("notes").put({text: "hello", big: 12345678901234567890n}, "greeting");
  tx.oncomplete = () => { window.ready = true; };
};
</script>"""


def harvest_page(folder: Path, url: str, chromium_path: Path) -> Path:
    """Harvest target `app` at `url` (ready once `window.ready` is true, a persistent profile)
    once into the JSON-lines sink under `folder`; the config's path."""
    extra = f"""
[targets.ready]
function = "window.ready === true"

[targets.auth]
profile_dir = "profile"

[browser]
executable_path = "{chromium_path}"
"""
    config = write_config(folder, url, extra)
    assert main(["harvest", "app", "--config", str(config), "--sink", "jsonl"]) == 0
    return config
