"""Checkpoints through the agent on `FakeRuntime`: made, listed, copied to another agent (the
core's relay, `_checkpoint_copy.copy`) with the files, removed (kept while a fork uses it),
and refused clearly (a stopped sandbox, a name taken, one not held)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from rock_agent import _checkpoints
from rock_agent.testing import FakeRuntime
from rock_core._checkpoint_copy import copy
from rock_core._errors import AlreadyExists, BadRequest, ImageNotFound
from rock_core._protocol import (
    CreateSandbox,
    Done,
    FileReply,
    ReadFile,
    RemoveSandbox,
    SandboxReply,
    StopSandbox,
    WriteFile,
)
from rock_core.protocol import (
    CheckpointListReply,
    CheckpointReply,
    CheckpointSandbox,
    ExportCheckpoint,
    ImportCheckpoint,
    ListCheckpoints,
    RemoveCheckpoint,
    Reply,
    raise_for_reply,
)

from ..conftest import SH_IMAGE
from .test_fake_coverage import OWNER, Fake, anyio_backend, covers, open_fake, spec

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio


async def make_box(fake: Fake, sandbox_id: str, image: str = SH_IMAGE) -> None:
    request = CreateSandbox(sandbox_id=sandbox_id, spec=spec(image=image))
    await fake.conn.call(request, SandboxReply)


async def listed(fake: Fake) -> list[tuple[str, str, int]]:
    reply = await fake.conn.call(ListCheckpoints(), CheckpointListReply)
    return [(c.checkpoint_id, c.host_id, c.containers) for c in reply.checkpoints]


@covers(
    CheckpointSandbox,
    ListCheckpoints,
    ExportCheckpoint,
    ImportCheckpoint,
    RemoveCheckpoint,
    WriteFile,
    ReadFile,
)
async def test_a_checkpoint_moves_to_another_agent_with_its_files() -> None:
    other = FakeRuntime(host_id="other-host", images=[SH_IMAGE])
    async with open_fake() as a, open_fake(runtime=other) as b:
        here = a.server.host_id
        await make_box(a, "src")
        await a.conn.call(WriteFile(sandbox_id="src", path="/work/kept.txt", data=b"kept"), Done)
        made = (
            await a.conn.call(
                CheckpointSandbox(sandbox_id="src", checkpoint_id="ck-1"), CheckpointReply
            )
        ).checkpoint
        assert (made.checkpoint_id, made.source, made.origin) == ("ck-1", "src", here)
        assert made.image == "rock-checkpoint:ck-1" and not made.kept
        assert made.owner == f"{os.getuid()}:{OWNER}"  # the source sandbox's owner
        with pytest.raises(AlreadyExists, match="checkpoint 'ck-1' already exists"):
            await a.conn.call(
                CheckpointSandbox(sandbox_id="src", checkpoint_id="ck-1"), CheckpointReply
            )
        assert (await listed(a), await listed(b)) == ([("ck-1", here, 0)], [])
        with pytest.raises(ImageNotFound, match="no checkpoint 'ck-1' on host other-host"):
            await b.conn.call(RemoveCheckpoint(checkpoint_id="ck-1"), CheckpointReply)

        await copy(a.conn, b.conn, "ck-1")
        assert await listed(b) == [("ck-1", "other-host", 0)]
        await make_box(b, "fork", image="rock-checkpoint:ck-1")
        read = await b.conn.call(ReadFile(sandbox_id="fork", path="/work/kept.txt"), FileReply)
        assert read.data == b"kept"

        kept = await b.conn.call(RemoveCheckpoint(checkpoint_id="ck-1"), CheckpointReply)
        assert kept.checkpoint.containers == 1 and await listed(b) == [("ck-1", "other-host", 1)]
        await b.conn.call(RemoveSandbox(sandbox_id="fork"), Done)
        gone = await b.conn.call(RemoveCheckpoint(checkpoint_id="ck-1"), CheckpointReply)
        assert gone.checkpoint.containers == 0 and await listed(b) == []
        with pytest.raises(ImageNotFound, match="no checkpoint 'ck-1' on host other-host"):
            await copy(b.conn, a.conn, "ck-1")
        await a.conn.call(RemoveCheckpoint(checkpoint_id="ck-1"), CheckpointReply)
        assert await listed(a) == []


@covers(CheckpointSandbox, StopSandbox, ImportCheckpoint)
async def test_refusals_name_what_is_wrong() -> None:
    async with open_fake() as fake:
        await make_box(fake, "src")
        await fake.conn.call(StopSandbox(sandbox_id="src", timeout=1), SandboxReply)
        with pytest.raises(BadRequest, match=r"sandbox src is not running \(exited\)"):
            await fake.conn.call(
                CheckpointSandbox(sandbox_id="src", checkpoint_id="ck-2"), CheckpointReply
            )
        request = ImportCheckpoint(checkpoint_id="ck-2")
        async with fake.conn.open_request(request) as answers:
            await fake.conn.send_chunks(request.id, _garbage())
            async for message in answers:
                assert isinstance(message, Reply)
                with pytest.raises(BadRequest, match="not an image archive"):
                    raise_for_reply(message, CheckpointReply, request)
                break


async def _garbage() -> AsyncIterator[bytes]:
    yield b"no archive here" * 10


@covers(CheckpointSandbox, ListCheckpoints)
async def test_an_owners_checkpoints_are_reaped_with_it_unless_kept() -> None:
    async with open_fake() as fake:
        await make_box(fake, "src")
        for name, keep in [("goes", False), ("stays", True)]:
            request = CheckpointSandbox(sandbox_id="src", checkpoint_id=name, keep=keep)
            await fake.conn.call(request, CheckpointReply)
        (owner,) = {
            c.owner
            for c in (await fake.conn.call(ListCheckpoints(), CheckpointListReply)).checkpoints
        }
        await _checkpoints.reap_owner(fake.server, "0:someone-else")
        assert [c[0] for c in await listed(fake)] == ["goes", "stays"]
        # What the server does when it reaps the owner (gone, or its lease ended): the
        # source sandbox uses no checkpoint, so both could go; the kept one stays.
        await _checkpoints.reap_owner(fake.server, owner)
        assert [c[0] for c in await listed(fake)] == ["stays"]
        await _checkpoints.reap_where(fake.server, lambda key: True)
        assert [c[0] for c in await listed(fake)] == ["stays"]
