"""The garbage collector's settings while clusters are open (`ClusterOptions.gc_tuning`).

Rules:
- Why: a core holding tens of thousands of sandboxes keeps millions of objects the cyclic
  collector tracks. CPython's collections of the older generations scan all of them and stop
  the event loop for hundreds of milliseconds, many times over a bulk create (measured in
  docs/benchmarks.md, "Control plane at scale").
- What: while at least one cluster with `gc_tuning` is open, the thresholds are raised to
  `TUNED_THRESHOLDS`, so the young generation is collected every 50,000 net allocations
  instead of 700, and the older ones accordingly less often. Nothing is frozen: `gc.freeze`
  would keep any object alive at the cluster's start that later becomes cyclic garbage (and
  its finalizers) until the cluster closes; a program that knows its start-up objects live
  for good may call it itself after its warm-up.
- Counted, across threads: the first tuned cluster to open saves the process's thresholds;
  the last to close restores them, unless the program set thresholds of its own meanwhile
  (those it keeps).
- The embedding program opts out with ``open_cluster(..., gc_tuning=False)``: its collector
  is then left exactly as it is.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

TUNED_THRESHOLDS = (50_000, 50, 100)
"""Generation 0 after 50,000 net allocations; generation 1 every 50 of those; 2 every 100."""

_opened = 0
_saved: tuple[int, int, int] | None = None
_lock = threading.Lock()  # clusters may open in several threads, each with its event loop


@contextmanager
def tuned_gc(enabled: bool = True) -> Iterator[None]:
    """Tune the collector for as long as the block runs (nothing, when not `enabled`)."""
    global _opened, _saved
    if not enabled:
        yield
        return
    with _lock:
        if _opened == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(*TUNED_THRESHOLDS)
        _opened += 1
    try:
        yield
    finally:
        with _lock:
            _opened -= 1
            if _opened == 0:
                assert _saved is not None
                if gc.get_threshold() == TUNED_THRESHOLDS:
                    gc.set_threshold(*_saved)
                _saved = None


def tuned_clusters() -> int:
    """How many open clusters tune the collector now."""
    return _opened


__all__ = ["TUNED_THRESHOLDS", "tuned_clusters", "tuned_gc"]
