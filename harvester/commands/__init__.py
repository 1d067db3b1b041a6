"""One module per CLI command; each exposes `register(subparsers, common)`.

`register` adds the command's subparser (with `parents=[common]`, which carries `--config`) and
sets `func` to a callable taking the parsed arguments and returning the exit code. Command modules
never import each other: what two of them share lives in the `_`-prefixed modules (`_sinks`: the
`--sink` choice; `_once`: one harvest with its summary). This package is the composition root,
the one place that wires Flink, the inspector and the daemon together.
"""

from __future__ import annotations

from types import ModuleType

from harvester.commands import (
    check_config,
    demo,
    diff,
    dump,
    export,
    flink,
    harvest,
    history,
    inspector,
    report,
    run,
    runs,
    schema,
    serve,
    show,
    stores,
    watch,
)

COMMANDS: list[ModuleType] = [
    check_config,
    dump,
    harvest,
    run,
    demo,
    runs,
    stores,
    schema,
    show,
    history,
    diff,
    export,
    report,
    inspector,
    serve,
    flink,
    watch,
]
