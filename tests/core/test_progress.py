"""`ProgressReporter`: monotonic, rate-limited calls with a final ``done == total``, a raising
callback logged once, a bad callback refused (plain calls with a fake clock); the core's
`warm_image` counting hosts on a fake cluster."""

from __future__ import annotations

import logging
from itertools import pairwise

import pytest

from rock_core import BadRequest, Progress, ProgressReporter, check_progress, warm_image
from rock_core.testing import open_fake_cluster
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def reporter(
    total: int | None, clock: Clock | None = None
) -> tuple[ProgressReporter, list[Progress]]:
    seen: list[Progress] = []
    made = ProgressReporter(seen.append, "test", "things", total, clock=clock or Clock())
    return made, seen


def test_many_events_in_one_instant_make_one_call_plus_the_final_one() -> None:
    made, seen = reporter(16_000)
    made.start()
    for done in range(1, 16_001):
        made.update(done)
    made.finish()
    assert [(p.done, p.total) for p in seen] == [(0, 16_000), (16_000, 16_000)]
    assert seen[-1].finished and seen[-1].fraction == 1.0


def test_calls_are_at_most_one_per_interval_and_done_never_goes_down() -> None:
    clock = Clock()
    made, seen = reporter(1000, clock=clock)
    for done in range(1, 1001):
        clock.now += 0.01  # 100 events a second
        made.update(done if done % 7 else done - 5)  # now and then an older count arrives
    made.finish()
    assert 95 <= len(seen) <= 102  # ten seconds at ten calls a second, and the final one
    dones = [p.done for p in seen]
    assert dones == sorted(dones)
    assert all(b.elapsed - a.elapsed >= 0.1 - 1e-9 for a, b in pairwise(seen[:-1]))
    assert (seen[-1].done, seen[-1].total) == (1000, 1000)
    assert seen[-1].elapsed == pytest.approx(10.0)


def test_an_unknown_total_becomes_what_was_done_at_the_end() -> None:
    clock = Clock()
    made, seen = reporter(None, clock=clock)
    made.advance(300)
    clock.now += 1
    made.advance(200)
    made.finish()
    assert [(p.done, p.total) for p in seen] == [(300, None), (500, None), (500, 500)]
    assert seen[0].fraction is None
    assert str(seen[0]) == "test: 300/? things (0.0 s)"


def test_the_final_call_is_not_repeated_when_the_last_update_said_it() -> None:
    made, seen = reporter(3)
    made.update(3)
    made.finish()
    assert [(p.done, p.total) for p in seen] == [(3, 3)]


def test_a_raising_callback_is_logged_once_and_does_not_stop_the_calls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    def broken(progress: Progress) -> None:
        calls.append(progress.done)
        raise ValueError("bar broke")

    clock = Clock()
    made = ProgressReporter(broken, "upload", "bytes", 3, clock=clock)
    with caplog.at_level(logging.WARNING, logger="rock_core.progress"):
        for done in (1, 2, 3):
            clock.now += 1
            made.update(done)
        made.finish()
    assert calls == [1, 2, 3]
    [record] = caplog.records
    assert "progress callback" in record.getMessage() and "upload" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


def test_no_callback_costs_nothing() -> None:
    made = ProgressReporter(None, "test", "things", 5)
    made.start()
    made.update(3)
    made.finish()
    assert made.done == 0  # nothing is tracked without a callback


def test_a_callback_that_is_not_callable_is_a_bad_request() -> None:
    with pytest.raises(
        BadRequest, match=r"progress must be a callable taking a rock_sdk\.Progress"
    ):
        check_progress(42)
    assert check_progress(None) is None
    assert check_progress(print) is print


@pytest.mark.anyio
async def test_warm_counts_hosts_and_refuses_a_bad_callback() -> None:
    # The fake agent serves no images: every host answers with an error.
    calls: list[Progress] = []
    async with open_fake_cluster(3) as cluster:
        with pytest.raises(BadRequest, match=r"cannot manage images: upgrade rock-agent there"):
            await warm_image(cluster, "python:3.11", progress=calls.append)
        with pytest.raises(BadRequest, match=r"^progress must be a callable"):
            await warm_image(cluster, "python:3.11", progress="yes")  # type: ignore[arg-type]
    first = calls[0]
    assert (first.what, first.unit, first.done, first.total) == ("warm", "hosts", 0, 3)
    assert [p.done for p in calls] == sorted(p.done for p in calls)
