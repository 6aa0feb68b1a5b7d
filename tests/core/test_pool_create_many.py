"""`rock_sdk.create_many` against fake agents, in virtual time: failures, concurrency,
progress, cancellation, bounded cleanup."""

from __future__ import annotations

import io
import re
from functools import partial

import anyio
import anyio.lowlevel
import pytest

from rock_core import (
    BadRequest,
    ImageNotFound,
    SandboxState,
)
from rock_core.testing import open_fake_cluster
from rock_sdk import CreateProgress, SandboxConfig
from rock_sdk._bulk import create_many
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

from .pool_kit import (
    RUNNING,
    Gate,
    GiB,
    HungRemoves,
    assert_no_resources_in_use,
    before_removes,
    live_on_agents,
    short_cleanups,
    until,
)

pytestmark = pytest.mark.anyio


OK = SandboxConfig(image="img:1", cpus=0.5, memory="1g")


BAD = SandboxConfig(image="bad:1", cpus=0.5, memory="1g")


async def test_create_many_starts_the_rest_and_reports_each_failure() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB, fail_images={"bad:1"}) as cluster:
        seen: list[CreateProgress] = []
        result = await create_many(cluster, [OK, BAD, OK, BAD, OK], on_progress=seen.append)
        assert [sb.state for sb in result.sandboxes] == [RUNNING] * 3
        assert [f.index for f in result.failures] == [1, 3]
        for failure in result.failures:
            assert isinstance(failure.error, ImageNotFound)
            assert str(failure) == (
                f"#{failure.index} ({failure.sandbox_id}): ImageNotFound: image 'bad:1' is not "
                "on this host and could not be pulled"
            )
            assert cluster.record(failure.sandbox_id).state is SandboxState.FAILED
        assert not result.ok and result.elapsed > 0
        assert [p.done for p in seen] == [1, 2, 3, 4, 5]
        assert (seen[-1].started, seen[-1].failed, seen[-1].total) == (3, 2, 5)
        with pytest.raises(ImageNotFound) as info:
            result.raise_on_failure()
        assert info.value.__notes__[:3] == [
            "2 of 5 sandboxes failed to start:",
            f"  {result.failures[0]}",
            f"  {result.failures[1]}",
        ]
        ok = await create_many(cluster, OK, 2)
        assert ok.ok and len(ok.sandboxes) == 2
        ok.raise_on_failure()  # nothing to raise


async def test_create_many_with_check_deletes_what_started() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB, fail_images={"bad:1"}) as cluster:
        with pytest.raises(ImageNotFound, match=r"^image 'bad:1' is not on this host") as info:
            await create_many(cluster, [OK, OK, BAD], check=True)
        assert info.value.__notes__[0] == "1 of 3 sandboxes failed to start:"
        assert live_on_agents(cluster) == set()
        assert_no_resources_in_use(cluster)


async def test_create_many_gives_up_on_hung_deletes(monkeypatch: pytest.MonkeyPatch) -> None:
    short_cleanups(monkeypatch)
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB, fail_images={"bad:1"}) as cluster:
        hung = HungRemoves()
        before_removes(monkeypatch, cluster.agents["fake-0"], hung)
        began = anyio.current_time()
        with pytest.raises(ImageNotFound, match=r"^image 'bad:1' is not on this host"):
            await create_many(cluster, [OK, OK, BAD], check=True)
        assert anyio.current_time() - began == pytest.approx(0.2)  # the deletes gave up
        assert len(hung.held) == 2
        hung.let_go.set()
    assert live_on_agents(cluster) == set()


async def test_create_many_bounds_its_concurrency() -> None:
    gate = Gate()
    async with open_fake_cluster(2, cpus=64, memory=256 * GiB, start_latency=gate) as cluster:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(create_many, cluster, OK, 10, concurrency=3))
            await until(lambda: len(gate.waiting) == 3, "three creates in flight")
            await anyio.sleep(0.05)
            assert len(gate.waiting) == 3
            gate.opened.set()
        assert len(live_on_agents(cluster)) == 10


async def test_create_many_fills_every_hosts_start_slots_by_default() -> None:
    gate = Gate()
    async with open_fake_cluster(
        2, cpus=64, memory=256 * GiB, max_starts=3, start_latency=gate
    ) as cluster:
        async with anyio.create_task_group() as tg:
            tg.start_soon(create_many, cluster, OK, 20)
            await until(lambda: len(gate.waiting) == 6, "3 starts on each of 2 hosts")
            await anyio.sleep(0.05)
            assert len(gate.waiting) == 6
            assert cluster.statistics().queue_depth == 0  # no more creates than start slots
            gate.opened.set()


async def test_cancelling_create_many_deletes_what_it_started() -> None:
    started = 0

    async def latency(sandbox_id: str) -> None:
        nonlocal started
        started += 1
        if started > 2:
            await anyio.sleep_forever()

    async with open_fake_cluster(1, cpus=64, memory=256 * GiB, start_latency=latency) as cluster:
        with anyio.move_on_after(0.3):
            await create_many(cluster, OK, 6, concurrency=6)
        assert live_on_agents(cluster) == set()
        assert all(r.state is not RUNNING for r in cluster.records())
        assert_no_resources_in_use(cluster)


async def test_create_many_with_ids_is_idempotent() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        first = await create_many(cluster, OK, 3, sandbox_ids=["a-1", "a-2", "a-3"])
        again = await create_many(cluster, OK, 3, sandbox_ids=["a-1", "a-2", "a-3"])
        assert [sb.sandbox_id for sb in again.sandboxes] == ["a-1", "a-2", "a-3"]
        assert [sb.sandbox_id for sb in first.sandboxes] == ["a-1", "a-2", "a-3"]
        assert live_on_agents(cluster) == {"a-1", "a-2", "a-3"}
        one = await create_many(cluster, SandboxConfig(image="img:1", sandbox_id="only"), 1)
        assert [sb.sandbox_id for sb in one.sandboxes] == ["only"]


async def test_create_many_progress_line() -> None:
    stream = io.StringIO()
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        await create_many(cluster, OK, 20, progress=stream)
    lines = stream.getvalue().splitlines()
    # Not a terminal: a line when the first create ends, then one per tenth of the work.
    assert [line.split()[1] for line in lines] == [f"{d}/20" for d in (1, *range(2, 21, 2))]
    assert re.fullmatch(r"create_many: 1/20 sandboxes started \(\d+\.\d/s, \d+\.\d s\)", lines[0])

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        await create_many(cluster, OK, 3, progress=terminal)
    shown = terminal.getvalue()
    # On a terminal: one line, rewritten in place, ended when all are done.
    assert shown.count("\r") == 3 and shown.count("\n") == 1 and shown.endswith("\n")
    assert shown.split("\r")[-1].startswith("create_many: 3/3 sandboxes started (")


async def test_create_many_refuses_bad_arguments_before_starting_anything() -> None:
    async with open_fake_cluster(1) as cluster:
        cases: list[tuple[dict[str, object], str]] = [
            ({"config": OK, "n": -1}, r"^n must be a whole number >= 0, got -1$"),
            ({"config": OK}, r"^n must be a whole number >= 0, got None$"),
            ({"config": OK, "n": "3"}, r"^n must be a whole number >= 0, got '3'$"),
            ({"config": OK, "n": True}, r"^n must be a whole number >= 0, got True$"),
            (
                {"config": "x", "n": 1},
                r"^config must be a list such as \[SandboxConfig\(...\), ...\], got 'x'$",
            ),
            (
                {"config": [OK, "x"]},
                r"^config must be a SandboxConfig or a list of them, got 'x' in it$",
            ),
            (
                {"config": OK, "n": 1, "on_progress": 5},
                r"^on_progress must be a callable taking a CreateProgress, or None, got 5$",
            ),
            (
                {"config": OK, "n": 1, "progress": "yes"},
                r"^progress must be True, False, a text stream or a callable taking a "
                r"rock_sdk\.Progress, got 'yes'$",
            ),
            ({"config": OK, "n": 1, "check": "no"}, r"^check must be True or False, got 'no'$"),
            (
                {"config": OK, "n": 3, "sandbox_ids": "abc"},
                r"^sandbox_ids must be a list such as \['sb-1', 'sb-2'\], got 'abc'$",
            ),
            ({"config": [OK, OK], "n": 3}, r"^n=3 but 2 configs were given$"),
            (
                {"config": OK, "n": 2, "sandbox_ids": ["x"]},
                r"^sandbox_ids has 1 ids for 2 sandboxes$",
            ),
            (
                {"config": OK, "n": 2, "sandbox_ids": ["x", "x"]},
                r"^sandbox_ids has duplicates: each sandbox needs its own id$",
            ),
            (
                {"config": SandboxConfig(image="img:1", sandbox_id="x"), "n": 2},
                r"^config.sandbox_id names one sandbox, not several: pass sandbox_ids=\[...\]$",
            ),
            (
                {
                    "config": SandboxConfig(image="img:1", sandbox_id="x"),
                    "n": 1,
                    "sandbox_ids": ["y"],
                },
                r"^give the ids either as config.sandbox_id or as sandbox_ids, not both$",
            ),
            (
                {"config": OK, "n": 2, "concurrency": 0},
                r"^concurrency must be a whole number >= 1, got 0$",
            ),
            (
                {"config": OK, "n": 2, "concurrency": "2"},
                r"^concurrency must be a whole number >= 1, got '2'$",
            ),
            (
                {"config": [OK, SandboxConfig(image="img:1", cpus=0)]},
                r"^invalid sandbox config: cpus 0: Expected `float` >= 0.01$",
            ),
        ]
        for kwargs, message in cases:
            with pytest.raises(BadRequest, match=message):
                await create_many(cluster, **kwargs)  # type: ignore[arg-type]
        assert cluster.records() == []
        empty = await create_many(cluster, OK, 0)
        assert (empty.sandboxes, empty.failures) == ([], [])
