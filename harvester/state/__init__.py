"""The state DB: runs, stores, the committed snapshot and the change history (SQLite).

The only code that writes SQL. `StateDB` is the API; the records it returns, the schema's
constants (and `LOOKUP_CHUNK`, the keys of one keyed query), the one diff rule (`change_op`) and
`reset_state` (`--reset-state`) are exported with it.
"""

from harvester.state.connections import LOOKUP_CHUNK
from harvester.state.db import StateDB
from harvester.state.history import KeyVersion
from harvester.state.ops import Op, change_op
from harvester.state.paths import DB_NAME, SPOOL_DIR, state_db_path
from harvester.state.records import (
    RUN_STATUSES,
    Change,
    ReadScope,
    RecordPage,
    Run,
    RunStatus,
    RunStore,
    SchemaChange,
    SchemaDb,
    SchemaStore,
    SnapshotRecord,
    Store,
    TargetDelivery,
)
from harvester.state.reset import reset_state
from harvester.state.retention import KEEP_FAILED_RUNS
from harvester.state.runs import new_run_id
from harvester.state.schema import SCHEMA_VERSION
from harvester.state.snapshot import SnapshotView

__all__ = [
    "DB_NAME",
    "KEEP_FAILED_RUNS",
    "LOOKUP_CHUNK",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "SPOOL_DIR",
    "Change",
    "KeyVersion",
    "Op",
    "ReadScope",
    "RecordPage",
    "Run",
    "RunStatus",
    "RunStore",
    "SchemaChange",
    "SchemaDb",
    "SchemaStore",
    "SnapshotRecord",
    "SnapshotView",
    "StateDB",
    "Store",
    "TargetDelivery",
    "change_op",
    "new_run_id",
    "reset_state",
    "state_db_path",
]
