"""The garbage collector's tuning counts clusters opened in several threads together (real
threads, so not in tests/core)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from rock_core._gc_tuning import TUNED_THRESHOLDS, tuned_clusters, tuned_gc

PROGRAM_THRESHOLDS = (900, 11, 12)


@pytest.fixture(autouse=True)
def program_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(*PROGRAM_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


def test_clusters_in_several_threads_count_together() -> None:
    entered = threading.Barrier(4)
    leave = threading.Event()

    def cluster_in_a_thread() -> None:
        with tuned_gc():
            entered.wait()
            leave.wait()

    threads = [threading.Thread(target=cluster_in_a_thread) for _ in range(3)]
    for thread in threads:
        thread.start()
    entered.wait()
    assert tuned_clusters() == 3
    assert gc.get_threshold() == TUNED_THRESHOLDS
    leave.set()
    for thread in threads:
        thread.join()
    assert tuned_clusters() == 0
    assert gc.get_threshold() == PROGRAM_THRESHOLDS
