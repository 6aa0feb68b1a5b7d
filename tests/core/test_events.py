"""What agents report unasked (`SandboxChanged`) reaches the cluster's records; create retries.

A scripted agent on an in-memory stream answers the lifecycle requests and pushes changes when
a test says so; the cluster reaches it through a `Connector`, as any host. In virtual time.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from rock_core import (
    BadRequest,
    ByteStream,
    Cluster,
    HostUnavailable,
    SandboxSpec,
    SandboxState,
    TransportError,
    open_agent_connection,
    open_cluster,
)
from rock_core._channel import FramedChannel
from rock_core._cluster_events import LinkDown, Listing
from rock_core._errors import ERROR_CLASSES
from rock_core._protocol import (
    Cancel,
    ClientMessage,
    CreateSandbox,
    Done,
    ErrorReply,
    Hello,
    InspectSandbox,
    ListSandboxes,
    Ping,
    Pong,
    RemoveSandbox,
    Reply,
    SandboxChanged,
    SandboxDeadlines,
    SandboxInfo,
    SandboxListReply,
    SandboxReply,
    StartSandbox,
    StopSandbox,
    Welcome,
    decode_client_message,
)
from rock_core.testing import FakeAgentConnector, memory_stream_pair
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio

S = SandboxState
SPEC = SandboxSpec(image="img:1", cpus=1, memory=1 << 30)
OWNER = "owner-1"


class ScriptedAgent:
    """Answers the cluster's lifecycle requests from a dict; pushes changes when told to."""

    def __init__(self, capabilities: tuple[str, ...] = ("timeouts", "events")) -> None:
        self.capabilities = list(capabilities)
        self.sandboxes: dict[str, SandboxInfo] = {}
        self.hello: Hello | None = None
        self.creates: list[str] = []
        self.create_errors: list[tuple[str, str]] = []  # (code, message) for the next creates
        self.removed: list[SandboxChanged] = []  # reported by ListSandboxes
        self.hold_stops: anyio.Event | None = None  # stop replies wait for it when set
        self._channel: FramedChannel[ClientMessage] | None = None
        self._ids = 0

    async def serve(self, stream: ByteStream) -> None:
        channel: FramedChannel[ClientMessage] = FramedChannel(stream, decode_client_message)
        hello = await channel.receive()
        assert isinstance(hello, Hello)
        self.hello = hello
        await channel.send(
            Welcome(
                protocol=hello.protocol,
                agent_version="scripted",
                host_id="h1",
                cpus=8,
                memory=64 << 30,
                capabilities=self.capabilities,
            )
        )
        self._channel = channel
        async with anyio.create_task_group() as tg:
            while (message := await channel.receive()) is not None:
                if not isinstance(message, Cancel):
                    tg.start_soon(self._answer, channel, message)
            tg.cancel_scope.cancel()

    async def push(self, change: SandboxChanged) -> None:
        assert self._channel is not None
        await self._channel.send(change)

    async def _answer(self, channel: FramedChannel[ClientMessage], message: ClientMessage) -> None:
        assert not isinstance(message, Hello)
        reply: Reply
        if isinstance(message, Ping):
            reply = Pong(id=message.id, time=time.time())
        elif isinstance(message, CreateSandbox):
            reply = self._create(message)
        elif isinstance(message, StopSandbox):
            if self.hold_stops is not None:
                await self.hold_stops.wait()
            self.sandboxes[message.sandbox_id].state = "exited"
            reply = SandboxReply(id=message.id, sandbox=self.sandboxes[message.sandbox_id])
        elif isinstance(message, StartSandbox):
            self.sandboxes[message.sandbox_id].state = "running"
            reply = SandboxReply(id=message.id, sandbox=self.sandboxes[message.sandbox_id])
        elif isinstance(message, RemoveSandbox | InspectSandbox) and (
            message.sandbox_id not in self.sandboxes
        ):
            reply = ErrorReply(id=message.id, code="sandbox_not_found", message="no such sandbox")
        elif isinstance(message, RemoveSandbox):
            del self.sandboxes[message.sandbox_id]
            reply = Done(id=message.id)
        elif isinstance(message, InspectSandbox):
            reply = SandboxReply(id=message.id, sandbox=self.sandboxes[message.sandbox_id])
        elif isinstance(message, ListSandboxes):
            found = [i for i in self.sandboxes.values() if i.owner == message.owner]
            reply = SandboxListReply(id=message.id, sandboxes=found, removed=self.removed)
        else:
            reply = ErrorReply(id=message.id, code="bad_request", message="not scripted")
        await channel.send(reply)

    def _create(self, message: CreateSandbox) -> Reply:
        self.creates.append(message.sandbox_id)
        info = self.sandboxes.get(message.sandbox_id)
        if info is None:
            self._ids += 1
            info = self.sandboxes[message.sandbox_id] = SandboxInfo(
                sandbox_id=message.sandbox_id,
                container_id=f"{self._ids:064x}",
                image=message.spec.image,
                state="running",
                owner=OWNER,
                created_at=time.time(),
                spec=message.spec,
            )
        if self.create_errors:
            # The container was made, but what reaches the core is an error.
            code, text = self.create_errors.pop(0)
            return ErrorReply(id=message.id, code=code, message=text)
        return SandboxReply(id=message.id, sandbox=info)


@asynccontextmanager
async def scripted_cluster(agent: ScriptedAgent) -> AsyncIterator[Cluster]:
    connector = FakeAgentConnector(agent, name="scripted://h1")
    async with open_cluster([connector], owner=OWNER) as cluster:
        yield cluster


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(5000):
        if condition():
            return
        await anyio.sleep(0.001)
    raise AssertionError(f"{what}: not within 5000 polls")


def steps(cluster: Cluster, sandbox_id: str) -> list[tuple[str, str, str]]:
    return [(t.event.value, t.to_state.value, t.reason) for t in cluster.record(sandbox_id).history]


def changed(sandbox_id: str, state: str, cause: str, reason: str) -> SandboxChanged:
    return SandboxChanged(sandbox_id=sandbox_id, state=state, cause=cause, reason=reason, at=1.0)


# ---------------------------------------------------------------------------- the link


async def test_the_core_says_it_accepts_changes_and_routes_them_to_the_handler() -> None:
    agent = ScriptedAgent()
    client, server = memory_stream_pair()
    seen: list[SandboxChanged] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(agent.serve, server)
        async with open_agent_connection(client, owner=OWNER, name="h1") as conn:
            assert agent.hello is not None and agent.hello.accepts == ["changed"]
            await agent.push(changed("sb-x", "stopped", "idle", "dropped: no handler yet"))
            assert (await conn.call(Ping(id=conn.next_id()), Pong)).time > 0
            conn.on_event = seen.append
            change = changed("sb-x", "stopped", "idle", "expired")
            await agent.push(change)
            await until(lambda: seen == [change], "the change reached the handler")

            def broken(change: SandboxChanged) -> None:
                raise RuntimeError("a bug in the handler")

            conn.on_event = broken
            await agent.push(change)
            # The link survives a handler that raises: requests still get their replies.
            assert (await conn.call(Ping(id=conn.next_id()), Pong)).time > 0
            assert not conn.closed
        tg.cancel_scope.cancel()


# ---------------------------------------------------------------------------- the records


async def test_an_expiry_pushed_by_the_agent_moves_the_record_to_stopped() -> None:
    agent = ScriptedAgent()
    async with scripted_cluster(agent) as cluster:
        record = await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        await agent.push(changed("sb-1", "stopped", "idle", "expired: idle for 5 s"))
        await until(lambda: record.state is S.STOPPED, "stopped")
        assert steps(cluster, "sb-1")[2:] == [
            ("expire", "stopping", "expired: idle for 5 s"),
            ("stopped", "stopped", "expired: idle for 5 s"),
        ]
        assert cluster.statistics().hosts[0].used.sandboxes == 1, "a stopped one keeps its room"


async def test_a_delete_pushed_by_the_agent_deletes_the_record_and_frees_its_room() -> None:
    agent = ScriptedAgent()
    async with scripted_cluster(agent) as cluster:
        record = await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        await agent.push(changed("sb-1", "deleted", "lifetime", "expired: ran for 9 s"))
        await until(lambda: record.state is S.DELETED, "deleted")
        assert [e for e, _, _ in steps(cluster, "sb-1")[2:]] == ["expire", "delete", "deleted"]
        assert cluster.statistics().hosts[0].used.sandboxes == 0

        other = await cluster.create_sandbox(SPEC, sandbox_id="sb-2")
        await cluster.stop_sandbox("sb-2")
        await agent.push(changed("sb-2", "deleted", "auto_delete", "auto-delete 3 s after"))
        await until(lambda: other.state is S.DELETED, "auto-deleted")
        assert steps(cluster, "sb-2")[-2:] == [
            ("delete", "deleting", "auto-delete 3 s after"),
            ("deleted", "deleted", "auto-delete 3 s after"),
        ]


async def test_changes_made_by_another_program_are_followed() -> None:
    agent = ScriptedAgent()
    async with scripted_cluster(agent) as cluster:
        record = await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        await agent.push(changed("sb-1", "stopped", "engine", "stopped by another program"))
        await until(lambda: record.state is S.STOPPED, "stopped")
        await agent.push(changed("sb-1", "running", "request", "started at the request of x"))
        await until(lambda: record.state is S.RUNNING, "running again")
        assert [e for e, _, _ in steps(cluster, "sb-1")[2:]] == [
            "stop",
            "stopped",
            "start",
            "created",
        ]


async def test_a_change_racing_our_own_request_is_left_to_that_request() -> None:
    agent = ScriptedAgent()
    async with scripted_cluster(agent) as cluster:
        record = await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        agent.hold_stops = release = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(cluster.stop_sandbox, "sb-1")
            await until(lambda: record.state is S.STOPPING, "stop sent")
            # The engine's event for our own stop arrives before the reply.
            await agent.push(changed("sb-1", "stopped", "request", "stopped at our request"))
            await agent.push(changed("sb-9", "deleted", "idle", "not a sandbox of ours"))
            assert (await cluster.call("sb-1", Ping(id=999), Pong)).time > 0  # pushes handled
            assert record.state is S.STOPPING
            release.set()
        assert [e for e, _, _ in steps(cluster, "sb-1")[2:]] == ["stop", "stopped"]
        # A late duplicate changes nothing either.
        await agent.push(changed("sb-1", "stopped", "request", "again"))
        assert (await cluster.call("sb-1", Ping(id=1000), Pong)).time > 0
        assert len(record.history) == 4


async def test_reconcile_learns_what_the_agent_did_while_the_link_was_down() -> None:
    agent = ScriptedAgent()
    async with scripted_cluster(agent) as cluster:
        for name in ("sb-stopped", "sb-removed", "sb-died"):
            await cluster.create_sandbox(SPEC, sandbox_id=name)
        host = cluster.hosts["h1"]
        conn = host.link()
        conn.on_event = None  # as if the link was down when the agent acted
        agent.sandboxes["sb-stopped"].state = "exited"
        agent.sandboxes["sb-stopped"].deadlines = SandboxDeadlines(
            idle_timeout=5, stop_cause="idle"
        )
        del agent.sandboxes["sb-removed"]
        agent.removed = [changed("sb-removed", "deleted", "lifetime", "expired: ran for 60 s")]
        agent.sandboxes["sb-died"].state = "exited"
        reply = await conn.call(ListSandboxes(id=conn.next_id(), owner=OWNER), SandboxListReply)
        cluster._handle(Listing("h1", reply))
        assert steps(cluster, "sb-stopped")[2:] == [
            ("expire", "stopping", "stopped while the link was down (idle)"),
            ("stopped", "stopped", "stopped while the link was down (idle)"),
        ]
        assert [e for e, _, _ in steps(cluster, "sb-removed")[2:]] == [
            "expire",
            "delete",
            "deleted",
        ]
        # A stop with no known cause is still a failure, as before.
        assert steps(cluster, "sb-died")[-1][:2] == ("fail", "failed")
        assert cluster.statistics().hosts[0].used.sandboxes == 2


# ---------------------------------------------------------------------------- create retries


async def test_a_create_with_a_chosen_id_whose_outcome_is_unknown_can_be_retried() -> None:
    agent = ScriptedAgent()
    agent.create_errors = [("transport", "cannot reach the Docker engine")]
    async with scripted_cluster(agent) as cluster:
        with pytest.raises(TransportError, match=r"^cannot reach the Docker engine$"):
            await cluster.create_sandbox(SPEC, sandbox_id="sb-r")
        failed = cluster.record("sb-r")
        assert failed.state is S.FAILED and failed.retryable
        record = await cluster.create_sandbox(SPEC, sandbox_id="sb-r")
        assert record is not failed and record.state is S.RUNNING
        assert record.info is not None
        assert record.info.container_id == agent.sandboxes["sb-r"].container_id
        assert agent.creates == ["sb-r", "sb-r"] and len(agent.sandboxes) == 1
        assert steps(cluster, "sb-r")[0] == (
            "place",
            "creating",
            "create retried on h1 (first attempt: cannot reach the Docker engine)",
        )
        assert await cluster.create_sandbox(SPEC, sandbox_id="sb-r") is record
        assert cluster.statistics().hosts[0].used.sandboxes == 1


async def test_other_failures_and_random_ids_are_not_retried() -> None:
    agent = ScriptedAgent()
    agent.create_errors = [("sandbox_failed", "did not start"), ("transport", "engine gone")]
    async with scripted_cluster(agent) as cluster:
        for _ in range(2):
            with pytest.raises(ERROR_CLASSES["sandbox_failed"], match=r"^did not start$"):
                await cluster.create_sandbox(SPEC, sandbox_id="sb-f")
        assert agent.creates == ["sb-f"], "a failure that is known is answered from the record"
        with pytest.raises(TransportError, match=r"^engine gone$"):
            await cluster.create_sandbox(SPEC)
        (record,) = [r for r in cluster.records() if r.sandbox_id != "sb-f"]
        assert record.state is S.FAILED and not record.retryable


async def test_a_retry_while_the_link_is_down_says_so() -> None:
    agent = ScriptedAgent()
    agent.create_errors = [("transport", "link broke")]
    async with scripted_cluster(agent) as cluster:
        with pytest.raises(TransportError):
            await cluster.create_sandbox(SPEC, sandbox_id="sb-r")
        cluster._handle(LinkDown("h1", "cut by the test"))
        with pytest.raises(
            HostUnavailable,
            match=r"^host h1 is reconnecting: its link has been down for [\d.]+ s "
            r"\(last error: cut by the test\)$",
        ):
            await cluster.create_sandbox(SPEC, sandbox_id="sb-r")
        assert cluster.record("sb-r").retryable


async def test_timeouts_need_an_agent_that_enforces_them() -> None:
    agent = ScriptedAgent(capabilities=())
    async with scripted_cluster(agent) as cluster:
        timed = SandboxSpec(image="img:1", memory=1 << 30, idle_timeout=30)
        with pytest.raises(
            BadRequest, match=r"^the agent of host h1 \(version scripted\) cannot enforce timeouts"
        ):
            await cluster.create_sandbox(timed, sandbox_id="sb-t")
        assert agent.creates == []
        await cluster.create_sandbox(SPEC, sandbox_id="sb-plain")
