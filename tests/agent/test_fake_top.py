"""The live view's requests (`ReadHostView`, `CoreReport`) on `FakeRuntime`."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from rock_agent import _top
from rock_core._protocol import (
    CoreReport,
    CreateSandbox,
    Done,
    HostViewReply,
    PauseSandbox,
    PoolView,
    ReadHostView,
    Reply,
    SandboxReply,
    StopSandbox,
)

from .test_fake_coverage import Fake, anyio_backend, covers, open_fake, spec

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio

POOL = PoolView(
    name="warm", image="busybox", size=2, ready=1, target=2, handed_out=1, hits=3, misses=1
)


async def make_box(fake: Fake, sandbox_id: str, **changes: Any) -> None:
    conn = fake.conn
    request = CreateSandbox(id=conn.next_id(), sandbox_id=sandbox_id, spec=spec(**changes))
    await conn.call(request, SandboxReply)


@covers(ReadHostView, CoreReport)
async def test_a_host_view_holds_sandboxes_readings_reservations_and_core_reports() -> None:
    async with open_fake() as fake:
        conn = fake.conn
        await make_box(fake, "idle", idle_timeout=600.0, cpus=0.5)
        await make_box(fake, "busy", cpus=1.5)
        await conn.call(StopSandbox(id=conn.next_id(), sandbox_id="busy", timeout=1), SandboxReply)
        report = CoreReport(id=conn.next_id(), queued=2, starting=1, pools=[POOL])
        await conn.call(report, Done)
        async with fake.connect("admin", admin=True) as admin:
            view = (await admin.call(ReadHostView(id=admin.next_id()), HostViewReply)).view
        assert view.host_id == fake.server.host_id and view.cpus > 0 and view.memory > 0
        # Only the running sandbox holds its reservation, and only it has a reading.
        assert (view.cpus_reserved, view.memory_reserved) == (0.5, spec().memory)
        by_id = {s.info.sandbox_id: s for s in view.sandboxes}
        assert sorted(by_id) == ["busy", "idle"]
        assert by_id["busy"].stats is None and by_id["busy"].info.state != "running"
        idle = by_id["idle"]
        assert idle.stats is not None and idle.stats.pids >= 1
        assert idle.info.deadlines is not None and idle.info.deadlines.idle_at is not None
        assert [(c.owner, c.queued, c.starting, c.pools) for c in view.cores] == [
            ("tester", 2, 1, [POOL])
        ]


@covers(ReadHostView, CoreReport)
async def test_an_owner_sees_only_its_own_and_a_report_goes_with_its_connection() -> None:
    async with open_fake() as fake:
        await make_box(fake, "mine")
        async with fake.connect("other") as other:
            await other.call(CoreReport(id=other.next_id(), queued=5), Done)
            seen = (await other.call(ReadHostView(id=other.next_id()), HostViewReply)).view
            assert seen.sandboxes == [] and [c.owner for c in seen.cores] == ["other"]
            # The totals are the host's, whoever owns what.
            assert seen.memory_reserved == spec().memory
        conn = fake.conn
        view = (await conn.call(ReadHostView(id=conn.next_id(), stats=False), HostViewReply)).view
        assert [s.info.sandbox_id for s in view.sandboxes] == ["mine"]
        assert view.sandboxes[0].stats is None  # not asked for
        assert view.cores == []  # "other" left: its report went with its connection


async def test_starts_in_flight_are_counted_while_the_create_handler_runs() -> None:
    class Server:
        top = _top.TopState()

    entered, release = anyio.Event(), anyio.Event()

    async def create(server: Any, conn: Any, request: Any) -> Reply:
        entered.set()
        await release.wait()
        return Done(id=1)

    counted = _top.counting_starts(create)
    server = Server()
    async with anyio.create_task_group() as tg:
        tg.start_soon(counted, server, None, None)
        await entered.wait()
        assert server.top.starting == 1
        release.set()
    assert server.top.starting == 0


async def test_a_paused_sandbox_keeps_its_reservation_in_the_host_view() -> None:
    async with open_fake() as fake:
        conn = fake.conn
        await make_box(fake, "nap", cpus=0.5)
        await conn.call(PauseSandbox(id=conn.next_id(), sandbox_id="nap"), SandboxReply)
        view = (await conn.call(ReadHostView(id=conn.next_id()), HostViewReply)).view
        assert [s.info.state for s in view.sandboxes] == ["paused"]
        assert (view.cpus_reserved, view.memory_reserved) == (0.5, spec().memory)
