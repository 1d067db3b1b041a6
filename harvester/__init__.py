"""idb-harvester: harvest IndexedDB from web apps into Apache Flink as a changelog."""

from harvester.errors import (
    BrowserError,
    BrowserNotFoundError,
    ConfigError,
    FlinkError,
    FlinkJobError,
    HarvesterError,
    PageError,
    ReaderError,
    StateError,
    StateLockedError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "BrowserError",
    "BrowserNotFoundError",
    "ConfigError",
    "FlinkError",
    "FlinkJobError",
    "HarvesterError",
    "PageError",
    "ReaderError",
    "StateError",
    "StateLockedError",
    "UsageError",
    "__version__",
]
