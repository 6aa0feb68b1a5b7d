"""The agent's sandbox lifecycle, owners, deadlines and bad requests, on `FakeRuntime`."""

from __future__ import annotations

import os

import anyio
import msgspec
import pytest

from rock_core._channel import FramedChannel
from rock_core._endpoint import Peer
from rock_core._errors import AlreadyExists, BadRequest, ImageNotFound, SandboxNotFound
from rock_core._protocol import (
    PROTOCOL_VERSION,
    CreateSandbox,
    DeadlinesReply,
    Done,
    ErrorReply,
    Hello,
    InspectSandbox,
    Keepalive,
    ListSandboxes,
    RemoveSandbox,
    SandboxListReply,
    SandboxReply,
    SetTimeouts,
    StartSandbox,
    StopSandbox,
    Welcome,
    decode_agent_message,
)
from rock_core.testing import memory_stream_pair

from .test_fake_coverage import OWNER, Fake, anyio_backend, covers, open_fake, spec

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio


async def create(fake: Fake, sandbox_id: str, **changes: object) -> SandboxReply:
    conn = fake.conn
    request = CreateSandbox(id=conn.next_id(), sandbox_id=sandbox_id, spec=spec(**changes))
    return await conn.call(request, SandboxReply)


@covers(CreateSandbox, InspectSandbox, ListSandboxes, StopSandbox, StartSandbox, RemoveSandbox)
async def test_the_lifecycle_of_a_sandbox() -> None:
    async with open_fake() as fake:
        conn = fake.conn
        made = (await create(fake, "box")).sandbox
        assert (made.state, made.owner, made.image) == ("running", OWNER, spec().image)
        again = (await create(fake, "box")).sandbox  # a retried create is the same sandbox
        assert again.container_id == made.container_id
        seen = await conn.call(InspectSandbox(id=conn.next_id(), sandbox_id="box"), SandboxReply)
        assert seen.sandbox.container_id == made.container_id
        listed = await conn.call(ListSandboxes(id=conn.next_id()), SandboxListReply)
        assert [i.sandbox_id for i in listed.sandboxes] == ["box"]
        stopped = await conn.call(
            StopSandbox(id=conn.next_id(), sandbox_id="box", timeout=1), SandboxReply
        )
        assert stopped.sandbox.state == "exited"
        started = await conn.call(StartSandbox(id=conn.next_id(), sandbox_id="box"), SandboxReply)
        assert started.sandbox.state == "running"
        await conn.call(RemoveSandbox(id=conn.next_id(), sandbox_id="box"), Done)
        with pytest.raises(SandboxNotFound, match="no sandbox 'box' on host fake-host"):
            await conn.call(InspectSandbox(id=conn.next_id(), sandbox_id="box"), SandboxReply)
        assert await fake.runtime.list_sandboxes() == []


@covers(CreateSandbox, InspectSandbox)
async def test_conflicts_and_other_owners() -> None:
    async with open_fake() as fake:
        await create(fake, "mine")
        with pytest.raises(AlreadyExists, match="already exists with a different spec"):
            await create(fake, "mine", cpus=0.5)
        async with fake.connect("someone-else") as other:
            with pytest.raises(SandboxNotFound, match="no sandbox 'mine' on host fake-host"):
                await other.call(
                    InspectSandbox(id=other.next_id(), sandbox_id="mine"), SandboxReply
                )
            request = CreateSandbox(id=other.next_id(), sandbox_id="mine", spec=spec())
            with pytest.raises(AlreadyExists, match="is taken on host fake-host by another owner"):
                await other.call(request, SandboxReply)
        async with fake.connect("admin", admin=True) as admin:
            request = CreateSandbox(id=admin.next_id(), sandbox_id="adm", spec=spec())
            with pytest.raises(BadRequest, match="an administrator's connection owns no sandboxes"):
                await admin.call(request, SandboxReply)


@covers(CreateSandbox)
async def test_a_missing_image_is_refused_and_makes_nothing() -> None:
    async with open_fake() as fake:
        conn = fake.conn
        request = CreateSandbox(
            id=conn.next_id(), sandbox_id="nope", spec=spec(image="rock/none:1", pull="never")
        )
        with pytest.raises(ImageNotFound, match="image 'rock/none:1' is not on this host"):
            await conn.call(request, SandboxReply)
        assert await fake.runtime.list_sandboxes() == []


@covers(CreateSandbox, SetTimeouts, Keepalive)
async def test_timeouts_are_set_and_kept_alive() -> None:
    async with open_fake() as fake:
        conn = fake.conn
        await create(fake, "timed", idle_timeout=600.0)
        reply = await conn.call(
            SetTimeouts(id=conn.next_id(), sandbox_id="timed", lifetime=3600.0, on_expire="delete"),
            DeadlinesReply,
        )
        deadlines = reply.deadlines
        assert (deadlines.idle_timeout, deadlines.lifetime) == (600.0, 3600.0)
        assert deadlines.on_expire == "delete" and deadlines.lifetime_at is not None
        kept = await conn.call(Keepalive(id=conn.next_id(), sandbox_id="timed"), DeadlinesReply)
        assert kept.deadlines.idle_at is not None and deadlines.idle_at is not None
        assert kept.deadlines.idle_at >= deadlines.idle_at
        with pytest.raises(SandboxNotFound, match="no sandbox 'gone' on host fake-host"):
            await conn.call(Keepalive(id=conn.next_id(), sandbox_id="gone"), DeadlinesReply)


@covers(CreateSandbox)
async def test_an_ended_lifetime_stops_the_sandbox_and_tells_its_owner() -> None:
    async with open_fake() as fake:
        changes, stopped = fake.watch()
        await create(fake, "short", lifetime=0.5)
        with anyio.fail_after(30):
            await stopped.wait()
        assert (changes[-1].sandbox_id, changes[-1].cause) == ("short", "lifetime")
        assert (await fake.runtime.inspect("short")).state == "exited"


@covers(CreateSandbox)
async def test_the_owners_sandboxes_go_when_its_link_closes() -> None:
    async with open_fake() as fake:
        async with fake.connect("leaving") as other:
            request = CreateSandbox(id=other.next_id(), sandbox_id="brief", spec=spec())
            await other.call(request, SandboxReply)
            assert other.welcome.lease == 60.0
        with anyio.fail_after(30):
            while await fake.runtime.list_sandboxes():
                await anyio.wait_all_tasks_blocked()
        await create(fake, "stays")
        assert [i.sandbox_id for i in await fake.runtime.list_sandboxes()] == ["stays"]


async def test_bad_requests_are_answered_on_their_own_id() -> None:
    async with open_fake() as fake:
        client, end = memory_stream_pair()
        async with anyio.create_task_group() as tg:
            tg.start_soon(fake.server.serve, end, Peer(uid=os.getuid()))
            channel = FramedChannel(client, decode_agent_message)
            await channel.send(Hello(protocol=PROTOCOL_VERSION, client="raw", owner=OWNER))
            assert isinstance(await channel.receive(), Welcome)
            bad = {"op": "create", "id": 7, "sandbox_id": "x", "spec": {"image": 5}}
            await channel.send_payload(msgspec.msgpack.encode(bad))
            await channel.send_payload(msgspec.msgpack.encode({"op": "frobnicate", "id": 8}))
            first, second = await channel.receive(), await channel.receive()
            assert isinstance(first, ErrorReply) and isinstance(second, ErrorReply)
            assert (first.id, first.code) == (7, "bad_request"), first
            assert "spec.image" in first.message, first
            assert (second.id, second.code) == (8, "bad_request"), second
            assert "unknown request kind 'frobnicate'" in second.message
            await channel.aclose()
        assert await fake.runtime.list_sandboxes() == []
