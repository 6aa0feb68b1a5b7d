"""The agent protocol's conformance checks: what a core may rely on of any agent.

Rules:
- Every check talks to the agent only through the protocol, over a stream the `Subject`
  opens: with rock_core's `AgentConnection` (as a core does), or frame by frame where the
  check is about the agent's answers to what a core would never send.
- Each check names the request kinds it needs (`Check.kinds`); an agent that serves only some
  kinds (the fake) runs the checks its kinds allow. `ENDPOINT_KINDS` are answered by the
  shared endpoint, so by every agent.
- Errors are checked by type, whole message and details, as a core sees them.
- Backend-neutral (anyio only): the fake runs them on asyncio and trio alike.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import anyio
import msgspec
import pytest

from rock_core import (
    AgentConnection,
    AlreadyExists,
    BadRequest,
    ByteStream,
    ImageNotFound,
    SandboxNotFound,
    SandboxSpec,
    open_agent_connection,
)
from rock_core._channel import FramedChannel
from rock_core._protocol import (
    PROTOCOL_VERSION,
    AgentMessage,
    Cancel,
    CreateSandbox,
    Done,
    ErrorReply,
    Hello,
    InspectSandbox,
    ListSandboxes,
    PauseSandbox,
    Ping,
    Pong,
    RemoveSandbox,
    Request,
    ResumeSandbox,
    SandboxChanged,
    SandboxInfo,
    SandboxListReply,
    SandboxReply,
    StartSandbox,
    StopSandbox,
    Welcome,
    decode_agent_message,
)

ENDPOINT_KINDS: frozenset[type[Request]] = frozenset({Cancel})
PATIENCE = 30.0  # seconds a check waits for something the agent does in the background
POLLS = 3000  # looks a check takes at what the agent does in the background


@dataclass
class Subject:
    """An agent under test, as the checks reach it.

    `open_stream` opens a fresh client stream the agent serves (as a connector does);
    `held(sandbox_id)` is a request the agent keeps in flight until it is cancelled, given a
    running sandbox of the caller's.
    """

    host_id: str
    image: str
    kinds: frozenset[type[Request]]
    open_stream: Callable[[], AbstractAsyncContextManager[ByteStream]]
    held: Callable[[str], Request]

    @asynccontextmanager
    async def connect(self, owner: str, *, admin: bool = False) -> AsyncIterator[AgentConnection]:
        """A handshaken connection of `owner` (or an administrator's)."""
        async with (
            self.open_stream() as stream,
            open_agent_connection(stream, owner=owner, admin=admin) as conn,
        ):
            yield conn

    @asynccontextmanager
    async def raw(self, owner: str = "raw") -> AsyncIterator[FramedChannel[AgentMessage]]:
        """A framed channel that has said `Hello` as `owner` and heard its `Welcome`."""
        async with self.open_stream() as stream:
            channel = FramedChannel(stream, decode_agent_message)
            await channel.send(Hello(protocol=PROTOCOL_VERSION, client="raw", owner=owner))
            assert isinstance(await channel.receive(), Welcome)
            yield channel

    def spec(self, **changes: object) -> SandboxSpec:
        """A small spec on the agent's image."""
        return msgspec.structs.replace(SandboxSpec(image=self.image, memory=256 << 20), **changes)


Run = Callable[[Subject], Awaitable[None]]


@dataclass(frozen=True)
class Check:
    """One conformance check and the request kinds it makes the agent serve."""

    run: Run
    kinds: frozenset[type[Request]]

    @property
    def name(self) -> str:
        """The check's function name."""
        return self.run.__name__


CHECKS: list[Check] = []


def check(*kinds: type[Request]) -> Callable[[Run], Run]:
    """Register a check that needs `kinds`."""

    def register(run: Run) -> Run:
        CHECKS.append(Check(run, frozenset(kinds)))
        return run

    return register


async def create(conn: AgentConnection, subject: Subject, sandbox_id: str) -> SandboxInfo:
    """Create a sandbox of `subject.spec()`; its info."""
    request = CreateSandbox(sandbox_id=sandbox_id, spec=subject.spec())
    return (await conn.call(request, SandboxReply)).sandbox


def whole(message: str) -> str:
    """A `match` pattern for exactly `message`."""
    return f"^{re.escape(message)}$"


def not_found(subject: Subject, sandbox_id: str) -> str:
    """A `match` pattern for the message of a `SandboxNotFound` for `sandbox_id`."""
    return whole(f"no sandbox {sandbox_id!r} on host {subject.host_id}")


# ---------------------------------------------------------------------------- handshake


@check()
async def the_welcome_says_who_the_agent_is(subject: Subject) -> None:
    async with subject.connect("alice") as first, subject.connect("bob") as second:
        welcome = first.welcome
        assert (welcome.protocol, welcome.host_id) == (PROTOCOL_VERSION, subject.host_id)
        assert welcome.cpus > 0 and welcome.memory > 0
        assert subject.image in welcome.images and "owners" in welcome.capabilities
        assert welcome.instance and second.welcome.instance == welcome.instance


@check()
async def a_bad_hello_is_refused_on_id_0(subject: Subject) -> None:
    newer = PROTOCOL_VERSION + 1
    for first, message in (
        (Hello(protocol=newer, client="raw", owner="old"), f"client speaks protocol {newer}; "),
        (Ping(id=1), "expected hello first, got 'ping'"),
    ):
        async with subject.open_stream() as stream:
            channel = FramedChannel(stream, decode_agent_message)
            await channel.send(first)
            refused = await channel.receive()
            assert isinstance(refused, ErrorReply), refused
            assert (refused.id, refused.code) == (0, "protocol"), refused
            assert refused.message.startswith(message), refused
            assert await channel.receive() is None  # and the agent hangs up


@check(Ping)
async def ping_is_answered(subject: Subject) -> None:
    async with subject.connect("alice") as conn:
        pong = await conn.call(Ping(), Pong)
        assert pong.time > 0


# ---------------------------------------------------------------------------- create


@check(CreateSandbox)
async def create_is_idempotent_by_id(subject: Subject) -> None:
    async with subject.connect("alice") as conn:
        made = await create(conn, subject, "box")
        assert (made.sandbox_id, made.state, made.owner) == ("box", "running", "alice")
        assert made.image == subject.image and made.spec == subject.spec()
        assert made.owner_uid == os.getuid()
        again = await create(conn, subject, "box")  # a retried create is the same sandbox
        assert (again.container_id, again.state) == (made.container_id, "running")
        twins: list[SandboxInfo] = []

        async def create_twin() -> None:
            twins.append(await create(conn, subject, "twin"))

        async with anyio.create_task_group() as tg:  # a retry while the first is in flight
            tg.start_soon(create_twin)
            tg.start_soon(create_twin)
        assert twins[0].container_id == twins[1].container_id


@check(CreateSandbox)
async def a_taken_id_is_already_exists(subject: Subject) -> None:
    async with subject.connect("alice") as conn, subject.connect("bob") as other:
        await create(conn, subject, "box")
        request = CreateSandbox(sandbox_id="box", spec=subject.spec(cpus=0.5))
        different = "sandbox box already exists with a different spec"
        with pytest.raises(AlreadyExists, match=whole(different)) as info:
            await conn.call(request, SandboxReply)
        assert info.value.details == {"sandbox_id": "box"}
        taken = f"sandbox id 'box' is taken on host {subject.host_id} by another owner"
        with pytest.raises(AlreadyExists, match=whole(f"{taken}: choose another id")) as info:
            await create(other, subject, "box")
        assert info.value.details == {"sandbox_id": "box"}
    async with subject.connect("root-ish", admin=True) as admin:
        refused = "an administrator's connection owns no sandboxes: it cannot create"
        with pytest.raises(BadRequest, match=whole(refused)):
            await create(admin, subject, "adm")


@check(CreateSandbox, ListSandboxes)
async def a_missing_image_never_pulled_is_image_not_found(subject: Subject) -> None:
    async with subject.connect("alice") as conn:
        request = CreateSandbox(
            sandbox_id="nope", spec=subject.spec(image="rock/none:1", pull="never")
        )
        message = "image 'rock/none:1' is not on this host and the pull policy is 'never'"
        with pytest.raises(ImageNotFound, match=whole(message)) as info:
            await conn.call(request, SandboxReply)
        assert info.value.details == {"image": "rock/none:1"}
        assert (await conn.call(ListSandboxes(), SandboxListReply)).sandboxes == []


@check(CreateSandbox, StopSandbox)
async def create_starts_a_stopped_sandbox_again(subject: Subject) -> None:
    async with subject.connect("alice") as conn:
        made = await create(conn, subject, "box")
        await conn.call(StopSandbox(sandbox_id="box", timeout=1), SandboxReply)
        again = await create(conn, subject, "box")
        assert again.container_id == made.container_id
        assert (again.state, again.exit_code) == ("running", None)


# ---------------------------------------------------------------------------- lifecycle


@check(CreateSandbox, InspectSandbox, ListSandboxes, StopSandbox, StartSandbox, RemoveSandbox)
async def a_sandbox_goes_through_its_lifecycle(subject: Subject) -> None:
    async with subject.connect("alice") as conn:
        made = await create(conn, subject, "box")
        seen = (await conn.call(InspectSandbox(sandbox_id="box"), SandboxReply)).sandbox
        assert seen.container_id == made.container_id and seen.spec == made.spec
        listed = (await conn.call(ListSandboxes(), SandboxListReply)).sandboxes
        assert [(i.sandbox_id, i.container_id) for i in listed] == [("box", made.container_id)]
        for _ in range(2):  # stopping a stopped sandbox is no error
            stop = StopSandbox(sandbox_id="box", timeout=1)
            stopped = (await conn.call(stop, SandboxReply)).sandbox
            assert stopped.state == "exited" and stopped.exit_code is not None
        for _ in range(2):
            started = (await conn.call(StartSandbox(sandbox_id="box"), SandboxReply)).sandbox
            assert started.container_id == made.container_id
            assert (started.state, started.exit_code) == ("running", None)
        assert isinstance(await conn.call(RemoveSandbox(sandbox_id="box"), Done), Done)
        with pytest.raises(SandboxNotFound, match=not_found(subject, "box")):
            await conn.call(InspectSandbox(sandbox_id="box"), SandboxReply)
        assert (await conn.call(ListSandboxes(), SandboxListReply)).sandboxes == []


@check(CreateSandbox, PauseSandbox, ResumeSandbox, InspectSandbox, StopSandbox)
async def pause_and_resume_are_idempotent_and_need_a_running_sandbox(subject: Subject) -> None:
    async with subject.connect("alice") as conn, subject.connect("bob") as other:
        await create(conn, subject, "box")
        for request, state in [(PauseSandbox, "paused"), (ResumeSandbox, "running")]:
            for _ in range(2):  # pausing a paused sandbox (resuming a running one) is no error
                reply = await conn.call(request(sandbox_id="box"), SandboxReply)
                assert reply.sandbox.state == state
                seen = await conn.call(InspectSandbox(sandbox_id="box"), SandboxReply)
                assert seen.sandbox.state == state
        with pytest.raises(SandboxNotFound, match=not_found(subject, "box")):
            await other.call(PauseSandbox(sandbox_id="box"), SandboxReply)
        await conn.call(StopSandbox(sandbox_id="box", timeout=1), SandboxReply)
        with pytest.raises(BadRequest, match=r"^sandbox box is not running \(exited\); start"):
            await conn.call(PauseSandbox(sandbox_id="box"), SandboxReply)


@check(CreateSandbox, PauseSandbox, StopSandbox, InspectSandbox)
async def a_paused_sandbox_stops_as_a_running_one_does(subject: Subject) -> None:
    async with subject.connect("alice") as conn:
        await create(conn, subject, "box")
        await conn.call(PauseSandbox(sandbox_id="box"), SandboxReply)
        stopped = await conn.call(StopSandbox(sandbox_id="box", timeout=1), SandboxReply)
        assert stopped.sandbox.state == "exited" and stopped.sandbox.exit_code is not None
        seen = await conn.call(InspectSandbox(sandbox_id="box"), SandboxReply)
        assert seen.sandbox.state == "exited"


@check(CreateSandbox, InspectSandbox, StopSandbox, StartSandbox, RemoveSandbox)
async def an_unknown_or_foreign_id_is_sandbox_not_found(subject: Subject) -> None:
    async with subject.connect("alice") as conn, subject.connect("bob") as other:
        await create(other, subject, "bobs")
        for sandbox_id in ("ghost", "bobs"):
            for request in (
                InspectSandbox(sandbox_id=sandbox_id),
                StopSandbox(sandbox_id=sandbox_id, timeout=1),
                StartSandbox(sandbox_id=sandbox_id),
                RemoveSandbox(sandbox_id=sandbox_id),
            ):
                with pytest.raises(SandboxNotFound, match=not_found(subject, sandbox_id)) as info:
                    await conn.call(request, SandboxReply)
                assert info.value.details == {"sandbox_id": sandbox_id}, request
        kept = (await other.call(InspectSandbox(sandbox_id="bobs"), SandboxReply)).sandbox
        assert kept.state == "running"


@check(CreateSandbox, InspectSandbox, ListSandboxes)
async def owners_see_their_own_and_an_administrator_sees_all(subject: Subject) -> None:
    async with subject.connect("alice") as alice, subject.connect("bob") as bob:
        await create(alice, subject, "a-1")
        await create(bob, subject, "b-1")
        mine = (await alice.call(ListSandboxes(owner="bob"), SandboxListReply)).sandboxes
        assert [i.sandbox_id for i in mine] == ["a-1"]  # an owner's filter is its own name
        async with subject.connect("ops", admin=True) as admin:
            every = (await admin.call(ListSandboxes(), SandboxListReply)).sandboxes
            owners = sorted((i.sandbox_id, i.owner) for i in every)
            assert owners == [("a-1", "alice"), ("b-1", "bob")]
            bobs = (await admin.call(ListSandboxes(owner="bob"), SandboxListReply)).sandboxes
            assert [i.sandbox_id for i in bobs] == ["b-1"]
            seen = (await admin.call(InspectSandbox(sandbox_id="a-1"), SandboxReply)).sandbox
            assert seen.owner == "alice"


@check(CreateSandbox, ListSandboxes)
async def an_owners_sandboxes_go_with_its_last_connection(subject: Subject) -> None:
    async with subject.connect("leaving") as first:
        async with subject.connect("leaving") as second:
            await create(second, subject, "brief")
        listed = (await first.call(ListSandboxes(), SandboxListReply)).sandboxes
        assert [i.sandbox_id for i in listed] == ["brief"]  # one connection is left
    async with subject.connect("ops", admin=True) as admin:
        for _ in range(POLLS):  # the agent reaps them after the connection has ended
            if not (await admin.call(ListSandboxes(owner="leaving"), SandboxListReply)).sandboxes:
                return
            await anyio.sleep(0.01)
        raise AssertionError(f"the sandboxes of a gone owner are still there after {POLLS} polls")


# ---------------------------------------------------------------------------- pushes


@check(CreateSandbox, StopSandbox, StartSandbox, RemoveSandbox)
async def changes_a_request_made_are_pushed_to_the_owner(subject: Subject) -> None:
    heard: list[SandboxChanged] = []
    all_heard = anyio.Event()
    expected = [
        ("stopped", "stopped at the request of alice"),
        ("running", "started at the request of alice"),
        ("stopped", "stopped at the request of alice"),
        ("deleted", "removed at the request of alice"),
    ]

    def on_event(change: SandboxChanged) -> None:
        if change.cause == "request":  # the real engine reports other changes too
            heard.append(change)
            if len(heard) == len(expected):
                all_heard.set()

    async with subject.connect("alice") as conn, subject.connect("bob") as other:
        other_heard: list[SandboxChanged] = []
        other.on_event = other_heard.append
        conn.on_event = on_event
        await create(conn, subject, "box")
        await conn.call(StopSandbox(sandbox_id="box", timeout=1), SandboxReply)
        await conn.call(StartSandbox(sandbox_id="box"), SandboxReply)
        await conn.call(StopSandbox(sandbox_id="box", timeout=1), SandboxReply)
        await conn.call(RemoveSandbox(sandbox_id="box"), Done)
        with anyio.fail_after(PATIENCE):
            await all_heard.wait()
        assert [(c.sandbox_id, c.state, c.reason) for c in heard] == [
            ("box", state, reason) for state, reason in expected
        ]
        assert all(c.at > 0 for c in heard)
        assert other_heard == []  # another owner hears nothing of it


# ---------------------------------------------------------------------------- the link


@check(Ping)
async def a_bad_request_is_answered_on_its_own_id(subject: Subject) -> None:
    async with subject.raw() as channel:
        bad = {"op": "create", "id": 7, "sandbox_id": "x", "spec": {"image": 5}}
        await channel.send_payload(msgspec.msgpack.encode(bad))
        await channel.send_payload(msgspec.msgpack.encode({"op": "frobnicate", "id": 8}))
        await channel.send(Ping(id=9))
        answers = {}
        for _ in range(3):
            answer = await channel.receive()
            assert isinstance(answer, ErrorReply | Pong), answer
            answers[answer.id] = answer
        first, second, pong = answers[7], answers[8], answers[9]
        assert isinstance(first, ErrorReply) and isinstance(second, ErrorReply), answers
        assert first.code == "bad_request" and "spec.image" in first.message, first
        assert (second.code, second.message) == ("bad_request", "unknown request kind 'frobnicate'")
        assert isinstance(pong, Pong)


@check(Cancel, CreateSandbox, Ping)
async def a_cancelled_request_ends_timed_out_and_the_link_goes_on(subject: Subject) -> None:
    async with subject.raw("alice") as channel:
        await channel.send(CreateSandbox(id=1, sandbox_id="box", spec=subject.spec()))
        made = await channel.receive()
        assert isinstance(made, SandboxReply), made
        held = subject.held("box")
        held.id = 2
        await channel.send(held)
        await channel.send(Ping(id=2))  # an id in flight is not reused
        refused = await channel.receive()
        assert isinstance(refused, ErrorReply), refused
        assert (refused.id, refused.code) == (0, "protocol"), refused
        assert refused.message == "request id 2 is already in use on this link"
        await channel.send(Cancel(id=3, target=2))
        await channel.send(Cancel(id=4, target=99))  # nothing to cancel: ignored
        cancelled = await channel.receive()
        assert isinstance(cancelled, ErrorReply), cancelled
        assert (cancelled.id, cancelled.code) == (2, "timed_out"), cancelled
        assert cancelled.message == "request cancelled"
        await channel.send(Ping(id=5))
        assert isinstance(pong := await channel.receive(), Pong) and pong.id == 5


__all__ = ["CHECKS", "ENDPOINT_KINDS", "Check", "Subject", "check", "whole"]
