"""The agent's images, commits, stats and port forwards, on `FakeRuntime`."""

from __future__ import annotations

import anyio
import pytest

from rock_agent.testing import FakeRuntime
from rock_core._errors import BadRequest, ImageNotFound, NotFound
from rock_core._ports import open_port_forward
from rock_core._protocol import (
    CommitSandbox,
    CreateSandbox,
    Done,
    FileReply,
    ForwardPort,
    ImageListReply,
    ImageReply,
    ListImages,
    PruneImages,
    PruneReply,
    ReadFile,
    ReadStats,
    SandboxReply,
    StatsReply,
    StopSandbox,
    WarmImage,
    WriteFile,
)

from ..conftest import SH_IMAGE
from .test_fake_coverage import Fake, anyio_backend, covers, open_fake, spec

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio


async def make_box(fake: Fake, sandbox_id: str, image: str = SH_IMAGE) -> None:
    conn = fake.conn
    request = CreateSandbox(id=conn.next_id(), sandbox_id=sandbox_id, spec=spec(image=image))
    await conn.call(request, SandboxReply)


@covers(ListImages, WarmImage)
async def test_images_are_listed_and_warmed() -> None:
    runtime = FakeRuntime(images=[SH_IMAGE], pullable=["rock/pulled:1"])
    async with open_fake(runtime=runtime) as fake:
        conn = fake.conn
        report = (await conn.call(ListImages(id=conn.next_id()), ImageListReply)).report
        assert [i.tags for i in report.images] == [[SH_IMAGE]]
        warmed = await conn.call(WarmImage(id=conn.next_id(), image="rock/pulled:1"), ImageReply)
        assert warmed.image.tags == ["rock/pulled:1"]
        with pytest.raises(ImageNotFound, match="image 'rock/absent:1' is not on this host"):
            await conn.call(WarmImage(id=conn.next_id(), image="rock/absent:1"), ImageReply)
        report = (await conn.call(ListImages(id=conn.next_id()), ImageListReply)).report
        assert sorted(t for i in report.images for t in i.tags) == sorted(
            ["rock/pulled:1", SH_IMAGE]
        )


@covers(CommitSandbox, PruneImages, WriteFile, ReadFile)
async def test_a_committed_image_carries_the_files_and_unused_images_are_pruned() -> None:
    async with open_fake() as fake:
        conn = fake.conn
        await make_box(fake, "src")
        await conn.call(
            WriteFile(id=conn.next_id(), sandbox_id="src", path="/saved.txt", data=b"kept"), Done
        )
        committed = await conn.call(
            CommitSandbox(id=conn.next_id(), sandbox_id="src", image="me/saved:1", changes=[]),
            ImageReply,
        )
        assert committed.image.tags == ["me/saved:1"]
        await make_box(fake, "copy", image="me/saved:1")
        read = await conn.call(
            ReadFile(id=conn.next_id(), sandbox_id="copy", path="/saved.txt"), FileReply
        )
        assert read.data == b"kept"
        with pytest.raises(BadRequest, match="unknown instruction BOGUS"):
            await conn.call(
                CommitSandbox(
                    id=conn.next_id(), sandbox_id="src", image="me/x:1", changes=["BOGUS 1"]
                ),
                ImageReply,
            )
        await conn.call(WarmImage(id=conn.next_id(), image=SH_IMAGE), ImageReply)
        pruned = await conn.call(PruneImages(id=conn.next_id(), max_bytes=0), PruneReply)
        # Every image is used by a sandbox: nothing may go.
        assert pruned.result.removed == [] and pruned.result.errors == []


@covers(ReadStats, StopSandbox)
async def test_stats_of_a_running_sandbox() -> None:
    async with open_fake() as fake:
        conn = fake.conn
        await make_box(fake, "busy")
        stats = (await conn.call(ReadStats(id=conn.next_id(), sandbox_id="busy"), StatsReply)).stats
        assert stats.pids >= 1 and stats.memory_limit == spec().memory
        assert stats.pids_limit == spec().pids and stats.memory > 0
        await conn.call(StopSandbox(id=conn.next_id(), sandbox_id="busy", timeout=1), SandboxReply)
        with pytest.raises(BadRequest, match="sandbox busy is not running"):
            await conn.call(ReadStats(id=conn.next_id(), sandbox_id="busy"), StatsReply)


async def echo(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send(data.upper())


@covers(ForwardPort)
async def test_a_port_is_forwarded_both_ways() -> None:
    async with open_fake() as fake:
        await make_box(fake, "web")
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            async with open_port_forward(fake.conn, "web", port) as forward:
                with anyio.fail_after(30):
                    async with await anyio.connect_tcp(*forward) as client:
                        await client.send(b"hello")
                        assert await client.receive() == b"HELLO"
            tg.cancel_scope.cancel()
        free = await anyio.create_tcp_listener(local_host="127.0.0.1")
        closed_port = free.extra(anyio.abc.SocketAttribute.local_port)
        await free.aclose()
        errors: list[Exception] = []
        async with open_port_forward(fake.conn, "web", closed_port, on_error=errors.append) as f:
            with anyio.fail_after(30):
                async with await anyio.connect_tcp(*f) as client:
                    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, OSError)):
                        await client.receive()
        assert len(errors) == 1 and isinstance(errors[0], NotFound), errors
        assert f"port {closed_port} in sandbox web" in str(errors[0])
