"""The REST API over the state DB: the changes feed, current records and schema (docs/api.md).

`ApiApp(state_path, token=…, exposed=…)(method, path, query, headers) -> Reply` for paths under
`PREFIX`; the composition root serves it through the daemon's HTTP server and `harvester serve`.
"""

from harvester.inspect.api.app import PREFIX, ApiApp

__all__ = ["PREFIX", "ApiApp"]
