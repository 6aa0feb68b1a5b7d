"""The live view's data (`rock_sdk._top.collect`) against a real socket agent and real Docker:
a program's sandboxes (one with a deadline) and its warm pool, seen by an administrator's
cluster through the agent they share; stop and delete from the view."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import anyio
import pytest
from msgspec.structs import replace

from rock_core import Cluster, open_cluster
from rock_sdk import SandboxConfig
from rock_sdk import open_cluster as open_sdk_cluster
from rock_sdk._top import Snapshot, collect, delete_sandbox, stop_sandbox

from ..conftest import SH_IMAGE
from .test_leases import SocketAgent, running_agent

pytestmark = [pytest.mark.anyio, pytest.mark.docker, pytest.mark.slow]

CONFIG = SandboxConfig(image=SH_IMAGE, memory="64m", cpus=0.25)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[SocketAgent]:
    with running_agent(tmp_path_factory.mktemp("top"), "top") as agent:
        yield agent


async def view_until(
    admin: Cluster, done: Callable[[Snapshot], bool], what: str, timeout: float = 30.0
) -> Snapshot:
    """Refresh until `done` holds (the cores report about once a second)."""
    snapshot = await collect(admin)
    with anyio.fail_after(timeout):
        while not done(snapshot):
            await anyio.sleep(0.3)
            snapshot = await collect(admin)
    assert done(snapshot), what
    return snapshot


async def test_the_view_holds_hosts_sandboxes_deadlines_readings_and_pools(
    agent: SocketAgent,
) -> None:
    async with (
        open_sdk_cluster([agent.address]) as program,
        open_cluster([agent.address], admin=True) as admin,
    ):
        plain = await program.create_sandbox(CONFIG)
        timed = await program.create_sandbox(replace(CONFIG, idle_timeout=600))
        async with program.open_pool(CONFIG, min_size=2, name="warm") as pool:
            await pool.wait_ready()
            taken = await pool.acquire()  # a hit

            def reported(snap: Snapshot) -> bool:
                return any(p.name == "warm" and p.hits == 1 for p in snap.pools)

            snap = await view_until(admin, reported, "the pool's hit reached the agent")
            (pool_row,) = [p for p in snap.pools if p.name == "warm"]
            assert pool_row.owner == program.owner
            assert (pool_row.hits, pool_row.misses, pool_row.handed_out) == (1, 0, 1)
            assert pool_row.target == 2 and pool_row.image == SH_IMAGE

            rows = {row.sandbox_id: row for row in snap.sandboxes}
            mine = [plain.sandbox_id, timed.sandbox_id, taken.sandbox_id]
            assert set(mine) <= set(rows)
            for sandbox_id in mine:
                row = rows[sandbox_id]
                assert (row.host, row.state, row.owner) == (agent.host_id, "running", program.owner)
                assert row.pids is not None and row.pids >= 1
                assert row.memory is not None and row.memory_limit == 64 << 20
            assert rows[plain.sandbox_id].expires_in is None
            deadline = rows[timed.sandbox_id]
            assert deadline.expiry == "idle"
            assert deadline.expires_in is not None and 500 < deadline.expires_in <= 600

            (host,) = snap.hosts
            assert (host.host, host.link, host.error) == (agent.host_id, "connected", "")
            # 2 + the pool's 2, and its refill may be starting; only running ones reserve.
            assert host.sandboxes == len(snap.sandboxes) >= 4
            running = [r for r in snap.sandboxes if r.state == "running"]
            assert host.cpus_used == pytest.approx(0.25 * len(running))
            assert host.memory_used == (64 << 20) * len(running)
            assert host.cpus > 0 and host.memory > 0 and host.queued == 0
            await pool.release(taken)

        # The pool closed and the program's report changed: the agent shows it without pools.
        await view_until(admin, lambda s: not s.pools, "the closed pool left the view")
    await view_until_gone(agent)


async def view_until_gone(agent: SocketAgent) -> None:
    """The program left: its sandboxes went, and so did its report (its connection ended)."""
    async with open_cluster([agent.address], admin=True) as admin:
        snap = await view_until(admin, lambda s: not s.sandboxes, "the sandboxes went")
        assert snap.pools == []


async def test_stop_and_delete_from_the_view(agent: SocketAgent) -> None:
    async with (
        open_sdk_cluster([agent.address]) as program,
        open_cluster([agent.address], admin=True) as admin,
    ):
        sandbox = await program.create_sandbox(CONFIG)
        sid = sandbox.sandbox_id

        def state(snap: Snapshot) -> str:
            return next((r.state for r in snap.sandboxes if r.sandbox_id == sid), "gone")

        await stop_sandbox(admin, agent.host_id, sid)
        snap = await view_until(admin, lambda s: state(s) == "exited", "stopped")
        assert [r.cpu_percent for r in snap.sandboxes if r.sandbox_id == sid] == [None]
        await delete_sandbox(admin, agent.host_id, sid)
        await view_until(admin, lambda s: state(s) == "gone", "deleted")


async def test_a_program_shows_its_own_view_and_acts_through_its_records(
    agent: SocketAgent,
) -> None:
    async with open_sdk_cluster([agent.address]) as program:
        sandbox = await program.create_sandbox(CONFIG)
        snap = await collect(program.core)
        assert [r.sandbox_id for r in snap.sandboxes] == [sandbox.sandbox_id]
        act: Callable[[Cluster, str, str], Awaitable[None]] = delete_sandbox
        await act(program.core, agent.host_id, sandbox.sandbox_id)
        assert program.core.record(sandbox.sandbox_id).state.value == "deleted"
        assert (await collect(program.core)).sandboxes == []
