"""The live inspector: a small server-rendered web app over the state DB (docs/inspect.md).

`InspectorApp(state_path)(method, path, query) -> Reply`; the composition root serves it
through the daemon's HTTP server (`harvester run`'s `/`) or on its own (`harvester inspect`).
"""

from harvester.inspect.web.app import InspectorApp
from harvester.inspect.web.request import Reply

__all__ = ["InspectorApp", "Reply"]
