"""The agent says why a sandbox ended (`SandboxChanged.end`, capability "end-reasons")."""

from __future__ import annotations

import anyio
import pytest

from rock_agent._end_reasons import end_of
from rock_core._protocol import CreateSandbox, EndsReply, ReadEnds, SandboxReply, StopSandbox

from .test_fake_coverage import anyio_backend, covers, open_fake, spec

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("cause", "action", "oom", "end"),
    [
        ("idle", "die", False, "idle"),
        ("lifetime", "destroy", False, "lifetime"),
        ("request", "die", False, "user"),
        ("owner_gone", "destroy", False, "owner_gone"),
        ("lease_expired", "destroy", False, "lease_expired"),
        ("auto_delete", "destroy", False, ""),  # the stop before it said why
        ("engine", "die", False, "init_exited"),
        ("engine", "die", True, "oom"),
        ("engine", "destroy", False, "engine_error"),
        ("request", "start", False, ""),
    ],
)
def test_each_cause_has_its_end(cause: str, action: str, oom: bool, end: str) -> None:
    assert end_of(cause, action, oom) == end


@covers(CreateSandbox)
async def test_an_oom_and_an_exit_are_told_with_their_code() -> None:
    async with open_fake() as fake:
        conn = fake.conn
        assert "end-reasons" in conn.welcome.capabilities
        changes, stopped = fake.watch()
        for box in ("one", "two"):
            request = CreateSandbox(id=conn.next_id(), sandbox_id=box, spec=spec())
            await conn.call(request, SandboxReply)
        await fake.runtime.crash("one", oom=True)
        with anyio.fail_after(30):
            await stopped.wait()
        assert (changes[-1].sandbox_id, changes[-1].end, changes[-1].exit_code) == (
            "one",
            "oom",
            137,
        )
        await fake.runtime.crash("two", exit_code=3)
        with anyio.fail_after(30):
            while changes[-1].sandbox_id != "two":  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert (changes[-1].end, changes[-1].exit_code) == ("init_exited", 3)


@covers(StopSandbox)
async def test_a_stop_asked_is_the_users() -> None:
    async with open_fake() as fake:
        conn = fake.conn
        changes, stopped = fake.watch()
        await conn.call(CreateSandbox(id=conn.next_id(), sandbox_id="b", spec=spec()), SandboxReply)
        await conn.call(StopSandbox(id=conn.next_id(), sandbox_id="b", timeout=1), SandboxReply)
        with anyio.fail_after(30):
            await stopped.wait()
        assert (changes[-1].state, changes[-1].cause, changes[-1].end) == (
            "stopped",
            "request",
            "user",
        )


@covers(ReadEnds)
async def test_the_log_of_ends_is_read_by_the_owner_and_its_administrator_only() -> None:
    async with open_fake() as fake:
        conn = fake.conn
        changes, stopped = fake.watch()
        await conn.call(CreateSandbox(id=conn.next_id(), sandbox_id="c", spec=spec()), SandboxReply)
        await fake.runtime.crash("c", exit_code=3)
        with anyio.fail_after(30):
            await stopped.wait()
        mine = await conn.call(ReadEnds(id=conn.next_id()), EndsReply)
        assert [(e.sandbox_id, e.state, e.end, e.exit_code) for e in mine.ends] == [
            ("c", "stopped", "init_exited", 3)
        ]
        assert mine.ends[0].at == changes[-1].at
        later = await conn.call(ReadEnds(id=conn.next_id(), since=mine.ends[0].at), EndsReply)
        other = await conn.call(ReadEnds(id=conn.next_id(), of="elsewhere"), EndsReply)
        assert later.ends == [] and other.ends == []
        async with fake.connect(owner="someone-else") as stranger:
            assert (await stranger.call(ReadEnds(id=stranger.next_id()), EndsReply)).ends == []
        async with fake.connect(admin=True) as admin:
            seen = await admin.call(ReadEnds(id=admin.next_id(), of="c"), EndsReply)
            assert [e.owner for e in seen.ends] == [mine.ends[0].owner]
