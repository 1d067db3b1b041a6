"""Watch mode: which stores of a page's IndexedDB just changed, from Chromium's own events.

`Watcher` attaches to pages and hands out `Batch`es: the stores that a burst of writes touched,
once the burst is quiet (`debounce`) or old enough (`max_delay`). What to do with them (read
those stores, spool, commit) is the caller's. See docs/watch.md for what the events cover.
"""

from harvester.watch.bursts import Batch
from harvester.watch.events import Watcher
from harvester.watch.names import name_glob, store_glob

__all__ = ["Batch", "Watcher", "name_glob", "store_glob"]
