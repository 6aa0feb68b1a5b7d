"""Idle timeouts, hard lifetimes, expiry policies and auto-delete against real Docker.

Timeouts are seconds long. The waits watch the core's record (never `status()`, which is a use
of the sandbox), so each test also proves the agent's pushed event moved the record. The last
tests run a socket agent (as a cluster host does) behind a proxy that can cut the link.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import anyio.abc
import pytest

from rock_core import BadRequest, Cluster, SandboxRecord, SandboxState, open_cluster
from rock_core._channel import ByteStream
from rock_core._framing import FrameDecoder, frame
from rock_core._protocol import SandboxReply, decode_agent_message
from rock_sdk import Sandbox, SandboxConfig
from rock_sdk import open_cluster as open_sdk_cluster

from ..conftest import SH_IMAGE
from .test_leases import SocketAgent, running_agent, wait_for

pytestmark = pytest.mark.anyio

S = SandboxState
FAST = {"heartbeat": 0.3, "heartbeat_timeout": 1.0}
SLACK = 2.5  # seconds an expiry may come after its deadline (the agent checks every second)


def config(**timeouts: object) -> SandboxConfig:
    return SandboxConfig(image=SH_IMAGE, memory="64m", **timeouts)  # type: ignore[arg-type]


async def engine_state(container_id: str) -> str:
    result = await anyio.run_process(
        ["docker", "inspect", "--format", "{{json .State}}", container_id], check=False
    )
    if result.returncode != 0:
        return "removed"
    return str(json.loads(result.stdout)["Status"])


def container_of(record: SandboxRecord) -> str:
    assert record.info is not None
    return record.info.container_id


async def wait_state(record: SandboxRecord, state: SandboxState, timeout: float) -> float:
    return await wait_for(lambda: record.state is state, timeout, f"{record.sandbox_id} {state}")


def events(record: SandboxRecord) -> list[str]:
    return [t.event.value for t in record.history]


@pytest.fixture
async def started() -> AsyncIterator[list[Sandbox]]:
    """Sandboxes a test starts; deleted at the end whatever happened to them."""
    sandboxes: list[Sandbox] = []
    yield sandboxes
    for sb in sandboxes:
        await sb.delete()


async def start(cluster: Cluster, started: list[Sandbox], **timeouts: object) -> Sandbox:
    sb = Sandbox(config(**timeouts), cluster=cluster)
    started.append(sb)
    await sb.start()
    return sb


# ---------------------------------------------------------------------------- one agent


async def test_idle_timeout_stops_the_sandbox_and_every_use_refreshes_it(
    cluster: Cluster, started: list[Sandbox]
) -> None:
    sb = await start(cluster, started, idle_timeout=2)
    record = cluster.record(sb.sandbox_id)
    began = time.monotonic()
    await sb.write_file("/data/kept.txt", "kept")
    for use in (sb.arun("true"), sb.read_file("/data/kept.txt"), sb.status(), sb.keepalive()):
        await anyio.sleep(1.2)
        await use
    assert record.state is S.RUNNING, "used every 1.2 s: never idle for 2 s"
    last_use = time.monotonic()
    waited = await wait_state(record, S.STOPPED, 2 + SLACK + 1)
    assert time.monotonic() - last_use >= 1.9
    assert time.monotonic() - began > 4.8
    assert events(record)[-2:] == ["expire", "stopped"]
    assert record.history[-1].reason.startswith("expired: idle for 2")
    assert await engine_state(container_of(record)) == "exited"
    assert waited < 2 + SLACK
    await sb.start()  # the files stayed
    assert await sb.read_file("/data/kept.txt") == b"kept"


async def test_a_long_command_is_not_idleness(cluster: Cluster, started: list[Sandbox]) -> None:
    sb = await start(cluster, started, idle_timeout=1.5)
    record = cluster.record(sb.sandbox_id)
    result = await sb.arun("sleep 3.5; echo done", timeout=20)
    assert result.output == "done\n" and record.state is S.RUNNING
    await wait_state(record, S.STOPPED, 1.5 + SLACK)


async def test_hard_lifetime_ends_a_busy_sandbox(cluster: Cluster, started: list[Sandbox]) -> None:
    sb = await start(cluster, started, lifetime=2.5, idle_timeout=60)
    record = cluster.record(sb.sandbox_id)
    deadlines = (await sb.status()).deadlines
    assert deadlines is not None and deadlines.started_at is not None
    assert deadlines.lifetime_at == pytest.approx(deadlines.started_at + 2.5)
    stopped_at = None
    while stopped_at is None:
        await anyio.sleep(0.3)
        if record.state is S.STOPPED:
            stopped_at = time.time()
        else:
            await sb.keepalive()  # uses do not extend a lifetime
    assert deadlines.lifetime_at <= stopped_at <= deadlines.lifetime_at + SLACK
    assert record.history[-2].event.value == "expire"
    assert record.history[-2].reason.startswith("expired: ran for 2")


async def test_the_delete_policy_removes_the_sandbox_and_frees_its_room(
    cluster: Cluster, started: list[Sandbox]
) -> None:
    sb = await start(cluster, started, idle_timeout=1.5, on_expire="delete")
    record = cluster.record(sb.sandbox_id)
    used = cluster.statistics().hosts[0].used.sandboxes
    await wait_state(record, S.DELETED, 1.5 + SLACK)
    assert events(record)[2:] == ["expire", "stopped", "delete", "deleted"]
    assert "on_expire='delete'" in record.history[2].reason
    assert await engine_state(container_of(record)) == "removed"
    assert cluster.statistics().hosts[0].used.sandboxes == used - 1


async def test_auto_delete_follows_an_asked_stop_and_an_expiry(
    cluster: Cluster, started: list[Sandbox]
) -> None:
    asked = await start(cluster, started, auto_delete_after=1.5)
    expired = await start(cluster, started, idle_timeout=1, auto_delete_after=1)
    await asked.stop()
    record = cluster.record(asked.sandbox_id)
    deadlines = (await asked.status()).deadlines
    assert deadlines is not None and deadlines.stopped_at is not None
    assert deadlines.delete_at == pytest.approx(deadlines.stopped_at + 1.5)
    assert deadlines.stop_cause == "request"
    await wait_state(record, S.DELETED, 1.5 + SLACK)
    assert record.history[-1].reason == "auto-delete 1.5 s after it stopped"
    other = cluster.record(expired.sandbox_id)
    await wait_state(other, S.DELETED, 2 + 2 * SLACK)
    assert events(other)[2:] == ["expire", "stopped", "delete", "deleted"]
    for rec in (record, other):
        assert await engine_state(container_of(rec)) == "removed"


async def test_keepalive_holds_an_idle_sandbox(cluster: Cluster, started: list[Sandbox]) -> None:
    sb = await start(cluster, started, idle_timeout=2)
    record = cluster.record(sb.sandbox_id)
    previous = None
    for _ in range(4):
        await anyio.sleep(1.1)
        deadlines = await sb.keepalive()
        assert deadlines.idle_at is not None and deadlines.last_used is not None
        assert deadlines.idle_at == pytest.approx(deadlines.last_used + 2)
        assert previous is None or deadlines.idle_at > previous + 1
        previous = deadlines.idle_at
    assert record.state is S.RUNNING
    await wait_state(record, S.STOPPED, 2 + SLACK)


async def test_timeouts_change_while_the_sandbox_runs(
    cluster: Cluster, started: list[Sandbox]
) -> None:
    free = await start(cluster, started)
    bound = await start(cluster, started, idle_timeout=1.5)
    deadlines = await free.set_timeouts(idle_timeout=1.5, on_expire="delete")
    assert (deadlines.idle_timeout, deadlines.on_expire, deadlines.lifetime) == (
        1.5,
        "delete",
        None,
    )
    deadlines = await bound.set_timeouts(idle_timeout=math.inf, auto_delete_after=60)
    assert (deadlines.idle_timeout, deadlines.idle_at, deadlines.auto_delete_after) == (
        None,
        None,
        60,
    )
    await wait_state(cluster.record(free.sandbox_id), S.DELETED, 1.5 + SLACK)
    record = cluster.record(bound.sandbox_id)
    assert record.state is S.RUNNING, "its idle timeout was removed"
    # A lifetime already used up takes effect at once.
    await bound.set_timeouts(lifetime=1)
    await wait_state(record, S.STOPPED, SLACK)
    assert record.history[-2].reason.startswith("expired: ran for")


async def test_bad_timeouts_are_refused(cluster: Cluster, started: list[Sandbox]) -> None:
    with pytest.raises(
        BadRequest, match=r"^invalid sandbox config: idle_timeout 0: Expected `float` > 0.0$"
    ):
        config(idle_timeout=0).to_spec()
    with pytest.raises(
        BadRequest, match=r"^invalid sandbox config: on_expire 'keep': Invalid enum value 'keep'$"
    ):
        config(on_expire="keep").to_spec()
    sb = await start(cluster, started, idle_timeout=30)
    with pytest.raises(
        BadRequest, match=r"^invalid 'timeouts' request: lifetime -1: Expected `float` > 0.0$"
    ):
        await sb.set_timeouts(lifetime=-1)
    with pytest.raises(
        BadRequest, match=r"^invalid 'timeouts' request: on_expire 'x': Invalid enum value 'x'$"
    ):
        await sb.set_timeouts(on_expire="x")  # type: ignore[arg-type]
    # Checked before it leaves the core too, for callers that skip the SDK's config.
    spec = config().to_spec()
    bad = type(spec)(image=spec.image, memory=spec.memory, auto_delete_after=-5)
    with pytest.raises(
        BadRequest,
        match=r"^invalid 'create' request: spec.auto_delete_after -5: Expected `float` > 0.0$",
    ):
        await cluster.create_sandbox(bad)
    deadlines = (await sb.status()).deadlines
    assert deadlines is not None and deadlines.idle_timeout == 30


async def test_status_shows_the_deadlines(cluster: Cluster, started: list[Sandbox]) -> None:
    sb = await start(cluster, started, idle_timeout=30, lifetime=600, auto_delete_after=90)
    before = time.time()
    status = await sb.status()
    d = status.deadlines
    assert d is not None
    assert (d.idle_timeout, d.lifetime, d.on_expire, d.auto_delete_after) == (30, 600, "stop", 90)
    assert d.last_used is not None and before - 0.1 <= d.last_used <= time.time()
    assert d.idle_at == pytest.approx(d.last_used + 30)
    assert d.started_at is not None and d.lifetime_at == pytest.approx(d.started_at + 600)
    assert (d.delete_at, d.stopped_at, d.in_use) == (None, None, False)
    assert [t.event.value for t in status.history] == ["place", "created"]
    plain = await start(cluster, started)
    d = (await plain.status()).deadlines
    assert d is not None and (d.idle_at, d.lifetime_at, d.delete_at) == (None, None, None)


# ---------------------------------------------------------------------------- socket agents


class LinkProxy:
    """A unix-socket proxy in front of a socket agent; the test cuts the link when it likes.

    While `blocked`, connections are closed as soon as they are accepted. With `drop_reply`, the
    next `SandboxReply` from the agent is kept in `dropped` instead of delivered, and the link
    is cut: a reply lost on the way.
    """

    def __init__(self, target: Path, path: Path) -> None:
        self.target = target
        self.path = path
        self.address = f"unix://{path}"
        self.blocked = False
        self.drop_reply = False
        self.dropped: list[SandboxReply] = []
        self._links: set[anyio.CancelScope] = set()

    def cut(self) -> None:
        for scope in list(self._links):
            scope.cancel()

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        listener = await anyio.create_unix_listener(self.path)
        task_status.started()
        await listener.serve(self._link)

    async def _link(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            if self.blocked:
                return
            try:
                agent = await anyio.connect_unix(self.target)
            except OSError:
                return
            async with agent:
                with anyio.CancelScope() as scope:
                    self._links.add(scope)
                    try:
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(self._to_agent, client, agent, scope)
                            tg.start_soon(self._to_client, agent, client, scope)
                    finally:
                        self._links.discard(scope)

    async def _to_agent(self, src: ByteStream, dst: ByteStream, scope: anyio.CancelScope) -> None:
        try:
            while True:
                await dst.send(await src.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            scope.cancel()

    async def _to_client(self, src: ByteStream, dst: ByteStream, scope: anyio.CancelScope) -> None:
        decoder = FrameDecoder()
        try:
            while True:
                for payload in decoder.feed(await src.receive()):
                    message = decode_agent_message(payload)
                    if self.drop_reply and isinstance(message, SandboxReply):
                        self.drop_reply = False
                        self.dropped.append(message)
                        self.cut()
                        return
                    await dst.send(frame(payload))
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            scope.cancel()


@pytest.fixture
def socket_agent(tmp_path: Path, docker_engine: None) -> Iterator[SocketAgent]:
    with running_agent(tmp_path, "timeouts") as agent:
        yield agent


@pytest.fixture
async def proxy(socket_agent: SocketAgent, tmp_path: Path) -> AsyncIterator[LinkProxy]:
    link = LinkProxy(socket_agent.socket, tmp_path / "proxy.sock")
    async with anyio.create_task_group() as tg:
        await tg.start(link.serve)
        yield link
        tg.cancel_scope.cancel()


async def test_deadlines_survive_an_agent_restart(socket_agent: SocketAgent) -> None:
    async with open_sdk_cluster([socket_agent.address], lease=30, **FAST) as cluster:
        aging = await cluster.create_sandbox(config(lifetime=7))
        idle = await cluster.create_sandbox(config(idle_timeout=100))
        await idle.set_timeouts(idle_timeout=3)  # on the host's record before it answers
        started_at = (await aging.status()).deadlines.started_at  # type: ignore[union-attr]
        host = cluster.core.hosts[socket_agent.host_id]
        socket_agent.kill()
        await wait_for(lambda: host.state != "connected", 10, "link loss noticed")
        assert socket_agent.ensure()["started"] is True
        restarted = time.time()
        await wait_for(lambda: host.state == "connected", 30, "reconnected")
        aging_record = cluster.core.record(aging.sandbox_id)
        idle_record = cluster.core.record(idle.sandbox_id)
        await wait_state(idle_record, S.STOPPED, 3 + 2 * SLACK)
        # The changed idle timeout held (3 s, counted from the restart), not the 100 s created.
        assert 3 - 0.5 <= time.time() - restarted <= 3 + 2 * SLACK
        await wait_state(aging_record, S.STOPPED, 7 + SLACK)
        # The lifetime counted from the sandbox's start, not from the agent's restart.
        assert aging_record.history[-1].at <= started_at + 7 + SLACK
        for record in (aging_record, idle_record):
            assert "expire" in events(record)
            assert await engine_state(container_of(record)) == "exited"


async def test_expiry_while_the_core_is_away_is_caught_up_on_reconnect(
    socket_agent: SocketAgent, proxy: LinkProxy
) -> None:
    async with open_cluster([proxy.address], lease=30, **FAST) as cluster:
        kept = await cluster.create_sandbox(config(idle_timeout=1.5).to_spec())
        gone = await cluster.create_sandbox(config(idle_timeout=1.5, on_expire="delete").to_spec())
        proxy.blocked = True
        proxy.cut()
        host = cluster.hosts[socket_agent.host_id]
        await wait_for(lambda: host.state != "connected", 10, "link loss noticed")
        assert await wait_for_engine(container_of(kept), "exited", 1.5 + SLACK + 2)
        assert await wait_for_engine(container_of(gone), "removed", 1.5 + SLACK + 2)
        assert kept.state is S.RUNNING and gone.state is S.RUNNING, "nobody told the core yet"
        proxy.blocked = False
        await wait_for(lambda: host.state == "connected", 30, "reconnected")
        await wait_state(kept, S.STOPPED, 10)
        await wait_state(gone, S.DELETED, 10)
        assert events(kept)[2:] == ["expire", "stopped"]
        assert kept.history[-1].reason == "stopped while the link was down (idle)"
        assert events(gone)[2:] == ["expire", "delete", "deleted"]
        assert gone.history[-1].reason.startswith("expired: idle for")
        assert cluster.statistics().hosts[0].used.sandboxes == 1


async def wait_for_engine(container_id: str, state: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await engine_state(container_id) == state:
            return True
        await anyio.sleep(0.2)
    return False
