"""The shared record files (`_state_file.rewrite`, as `ImageUsage` and `DeadlineStore` use it):
an update builds on what is there, under a lock, and leaves no temporary file behind."""

from __future__ import annotations

import threading
from pathlib import Path

from rock_agent._deadline_store import DeadlineStore, StoredDeadlines
from rock_agent._image_usage import USAGE_FILE, ImageUsage
from rock_agent._state_file import rewrite


def test_rewrite_replaces_the_file_with_what_content_builds(tmp_path: Path) -> None:
    path = tmp_path / "state" / "record"
    rewrite(path, lambda: b"one")
    rewrite(path, lambda: path.read_bytes() + b" two")
    assert path.read_bytes() == b"one two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["record", "record.lock"]


def test_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    usage = ImageUsage(tmp_path)

    def note(worker: int) -> None:
        for n in range(20):
            usage.update({f"sha256:{worker}-{n}": float(n)})

    workers = [threading.Thread(target=note, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(usage.load()) == 80
    assert (tmp_path / USAGE_FILE).exists()


def test_usage_keeps_the_newer_time_and_forgets(tmp_path: Path) -> None:
    usage = ImageUsage(tmp_path)
    usage.update({"a": 5.0, "b": 1.0})
    usage.update({"a": 3.0}, forget=["b"])
    assert usage.load() == {"a": 5.0}


def test_deadlines_update_and_forget(tmp_path: Path) -> None:
    store = DeadlineStore(tmp_path)
    store.update({"c1": StoredDeadlines(sandbox_id="s1"), "c2": StoredDeadlines(sandbox_id="s2")})
    store.update({"c3": StoredDeadlines(sandbox_id="s3", lifetime=9.0)}, forget=["c1"])
    assert {k: v.sandbox_id for k, v in store.load().items()} == {"c2": "s2", "c3": "s3"}
    assert store.load()["c3"].lifetime == 9.0
