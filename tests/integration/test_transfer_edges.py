"""Archive streams at their edges: abandoned or cancelled downloads and uploads, an upload
refused mid-stream, an agent killed mid-upload, a large round trip. A stream the client gives
up, or the agent refuses, leaves the sandbox usable for every kind of call.

Every `fail_after` here is a hang detector (generous on purpose), never a timing assertion.
What a transfer takes or refuses (special files, symlinks, paths, types) is
`test_transfer_paths`; the archives themselves, as data, `test_transfer_archives`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from rock_core import Cluster
from rock_core._connection import raise_for_reply
from rock_core._protocol import Download, Reply, StreamData, TransferReply, Upload
from rock_core._tar import END, dir_header, file_header, padding, single_file
from rock_sdk import BadRequest, Sandbox, SandboxConfig, TransportError
from rock_sdk import open_cluster as open_sdk_cluster

from ..conftest import SH_IMAGE
from ._transfers import HANG, KERNEL, own_sandbox
from .test_leases import SocketAgent, running_agent

pytestmark = pytest.mark.anyio


@pytest.fixture
async def fresh(cluster: Cluster) -> AsyncIterator[Sandbox]:
    """A sandbox of its own, for tests that may leave it wedged."""
    async for sb in own_sandbox(cluster, SH_IMAGE):
        yield sb


async def once(condition: Callable[[], bool]) -> None:
    """Return once `condition()` holds (polled: it watches counters, not events)."""
    while True:
        if condition():
            return
        await anyio.sleep(0.01)


async def assert_usable(sb: Sandbox) -> None:
    """Every kind of call on the sandbox completes: inspect, exec, archive, remove."""
    with anyio.fail_after(HANG):
        assert (await sb.status()).info is not None
    with anyio.fail_after(HANG):
        assert (await sb.execute(["echo", "alive"])).stdout == "alive\n"
    with anyio.fail_after(HANG):
        await sb.write_file("/tmp/after", b"after")
        assert await sb.read_file("/tmp/after") == b"after"
    with anyio.fail_after(HANG):
        await sb.delete()


# ---------------------------------------------------------------- archive streams are closed


async def test_a_read_over_the_limit_leaves_the_sandbox_usable(fresh: Sandbox) -> None:
    await fresh.arun("dd if=/dev/zero of=/tmp/big bs=1M count=100 2>/dev/null")
    with pytest.raises(
        BadRequest,
        match=r"^/tmp/big is larger than 15 MiB, the most read_file\(\) returns; use download\(\)$",
    ):
        await fresh.read_file("/tmp/big")
    await assert_usable(fresh)


async def test_a_download_cancelled_after_its_first_chunks_leaves_the_sandbox_usable(
    fresh: Sandbox,
) -> None:
    await fresh.arun("dd if=/dev/zero of=/tmp/big bs=1M count=100 2>/dev/null")
    conn = fresh.cluster.connection(fresh.sandbox_id)
    request = Download(id=conn.next_id(), sandbox_id=fresh.sandbox_id, path="/tmp/big")
    chunks = 0
    with anyio.fail_after(HANG):
        async with conn.open_request(request) as answers:
            await conn.grant(request.id, 2)
            async for message in answers:
                assert isinstance(message, StreamData), message
                chunks += 1
                if chunks == 2:
                    break  # leaving the block cancels the download on the agent
    assert chunks == 2
    await assert_usable(fresh)


async def test_an_sdk_download_cancelled_midway_leaves_the_sandbox_usable(
    fresh: Sandbox, tmp_path: Path
) -> None:
    await fresh.arun("dd if=/dev/zero of=/tmp/big bs=1M count=200 2>/dev/null")
    conn = fresh.cluster.connection(fresh.sandbox_id)
    start = conn._channel.bytes_received
    with anyio.fail_after(HANG), anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def cancel_once_streaming() -> None:
                await once(lambda: conn._channel.bytes_received >= start + (4 << 20))
                scope.cancel()

            tg.start_soon(cancel_once_streaming)
            await fresh.download("/tmp/big", tmp_path / "big")
    assert scope.cancelled_caught
    assert not (tmp_path / "big").exists()
    await assert_usable(fresh)


# ---------------------------------------------------------------- uploads cancelled or refused


async def test_an_upload_can_be_cancelled_midway(fresh: Sandbox, tmp_path: Path) -> None:
    big = tmp_path / "big"
    with big.open("wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB of zeros that take no disk here
    conn = fresh.cluster.connection(fresh.sandbox_id)
    start = conn._channel.bytes_sent
    with anyio.fail_after(HANG), anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def cancel_once_streaming() -> None:
                await once(lambda: conn._channel.bytes_sent >= start + (8 << 20))
                scope.cancel()

            tg.start_soon(cancel_once_streaming)
            await fresh.upload(big, "/tmp/big")
    assert scope.cancelled_caught
    await assert_usable(fresh)


async def test_an_upload_into_a_kernel_folder_by_a_member_name_is_refused(
    fresh: Sandbox,
) -> None:
    # A client that names the target only inside the tar stream is checked member by member,
    # here after the engine has begun to unpack the stream.
    conn = fresh.cluster.connection(fresh.sandbox_id)
    request = Upload(id=conn.next_id(), sandbox_id=fresh.sandbox_id, path="/")
    first = os.urandom(4 << 20)

    async def chunks() -> AsyncIterator[bytes]:
        yield dir_header("tmp/fine")
        yield file_header("tmp/fine/first.bin", len(first)) + first + padding(len(first))
        yield single_file("proc/sneaky", b"x")[: -len(END)]
        yield END

    with pytest.raises(BadRequest, match=f"^/proc/sneaky is under /proc, {KERNEL}"):
        async with conn.open_request(request) as answers:
            await conn.send_chunks(request.id, chunks())
            async for message in answers:
                if isinstance(message, Reply):
                    raise_for_reply(message, TransferReply, request)
    await assert_usable(fresh)


# ---------------------------------------------------------------- the agent dies mid-upload


@pytest.fixture
def socket_agent(tmp_path: Path, docker_engine: None) -> Iterator[SocketAgent]:
    with running_agent(tmp_path, "files", leaks_fail=False) as agent:
        yield agent


async def test_an_agent_killed_mid_upload_is_a_transport_error(
    socket_agent: SocketAgent, tmp_path: Path
) -> None:
    big = tmp_path / "big"
    with big.open("wb") as f:
        f.truncate(2 << 30)
    async with open_sdk_cluster([socket_agent.address], lease=30) as cluster:
        sb = await cluster.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"))
        conn = sb.cluster.connection(sb.sandbox_id)
        start = conn._channel.bytes_sent
        async with anyio.create_task_group() as tg:

            async def kill_once_streaming() -> None:
                await once(lambda: conn._channel.bytes_sent >= start + (16 << 20))
                socket_agent.kill()

            tg.start_soon(kill_once_streaming)
            with anyio.fail_after(HANG), pytest.raises(TransportError) as caught:
                await sb.upload(big, "/tmp/big")
        assert type(caught.value) is TransportError
        # The link's end as the reader saw it: a clean close, or a reset if data was unread.
        closed = re.escape(f"agent {socket_agent.address} closed the connection")
        assert re.fullmatch(f"{closed}|stream from peer broke: .*", str(caught.value))


# ---------------------------------------------------------------- large transfers, credit


async def test_a_200_mb_upload_and_download_round_trip_byte_exact(
    fresh: Sandbox, tmp_path: Path
) -> None:
    size = 200 << 20
    src, back = tmp_path / "big.bin", tmp_path / "back.bin"
    try:
        with src.open("wb") as f:  # sparse, with random blocks spread through it
            f.truncate(size)
            for offset in range(0, size, 7 << 20):
                f.seek(offset)
                f.write(os.urandom(64 << 10))
        with anyio.fail_after(300):
            await fresh.upload(src, "/tmp/big.bin")
            r = await fresh.arun("wc -c < /tmp/big.bin")
            assert r.output.strip() == str(size)
            await fresh.download("/tmp/big.bin", back)
        assert digest(back) == digest(src)
    finally:
        src.unlink(missing_ok=True)
        back.unlink(missing_ok=True)


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
