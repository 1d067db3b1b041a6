"""A state folder of the demo app harvested twice (JSON-lines sink, no Flink)."""

from __future__ import annotations

from pathlib import Path

from harvester.cli import main
from harvester.demo import serve_demo

CONFIG = """
[state]
dir = "state"
data_dir = "data"

[[targets]]
name = "demo"
url = "{url}"
schedule = "1h"

[targets.ready]
function = "window.demoReady === true"

[targets.auth]
profile_dir = "profile"
"""


def harvest_demo_twice(folder: Path) -> Path:
    """Harvest the demo into `folder` twice (the second load changes it); the config's path."""
    config = folder / "harvester.toml"
    with serve_demo(0) as server:
        config.write_text(CONFIG.format(url=server.url), encoding="utf-8")
        for _ in range(2):
            assert main(["harvest", "demo", "--config", str(config), "--sink", "jsonl"]) == 0
    return config
