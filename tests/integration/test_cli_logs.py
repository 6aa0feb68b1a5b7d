"""`rock logs` and `Sandbox.logs` on real Docker: what a sandbox's container printed.

The CLI runs as its own process (its own core and local agent) on sandboxes this test process
owns. A sandbox's main process is a sleep that prints nothing, so the tests print as it: a
program writing to ``/proc/1/fd/1`` and ``/proc/1/fd/2`` writes to the container's log.
"""

from __future__ import annotations

import datetime
import math
import re
import signal
import sys
from collections.abc import AsyncIterator

import anyio
import pytest
from anyio.abc import ByteReceiveStream
from anyio.streams.buffered import BufferedByteReceiveStream

from rock_core import BadRequest, Cluster, SandboxNotFound
from rock_sdk import LogChunk, Sandbox, SandboxConfig

from ..conftest import SH_IMAGE

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

EXIT_ERROR = 125
ROCK = [sys.executable, "-m", "rock_sdk._cli"]
OUT = b"out one\nout \xc3\xa9 two\n"
ERR = b"err one\n"
STAMP = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z "


async def rock(*args: str) -> tuple[int, bytes, bytes]:
    result = await anyio.run_process([*ROCK, *args], check=False)
    return result.returncode, result.stdout, result.stderr


async def print_main(sb: Sandbox, fd: int, data: bytes) -> None:
    """Print `data` as the sandbox's main process, to its stdout (1) or stderr (2)."""
    await sb.execute(["sh", "-c", f"cat > /proc/1/fd/{fd}"], stdin=data, check=True)


async def streams(sb: Sandbox, **options: object) -> tuple[bytes, bytes]:
    chunks = [chunk async for chunk in sb.logs(**options)]  # type: ignore[arg-type]
    return join(chunks, "stdout"), join(chunks, "stderr")


def join(chunks: list[LogChunk], stream: str) -> bytes:
    return b"".join(c.data for c in chunks if c.stream == stream)


async def wait_log(sb: Sandbox, out: bytes, err: bytes = b"") -> None:
    """Wait until the engine has the log hold `out` and `err` (it keeps it a moment later)."""
    with anyio.fail_after(30):
        while True:
            if await streams(sb) == (out, err):
                return
            await anyio.sleep(0.05)


async def rest(stream: ByteReceiveStream) -> bytes:
    """What is left on a stream up to its end."""
    data = bytearray()
    try:
        while True:
            data += await stream.receive()
    except anyio.EndOfStream:
        return bytes(data)


async def start(cluster: Cluster) -> Sandbox:
    sb = Sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"), cluster=cluster)
    await sb.start()
    return sb


@pytest.fixture(scope="module")
async def printer(cluster: Cluster) -> AsyncIterator[Sandbox]:
    """A sandbox whose container printed `OUT` to stdout and `ERR` to stderr."""
    sb = await start(cluster)
    try:
        await print_main(sb, 1, b"out one\n")
        await print_main(sb, 2, ERR)
        await wait_log(sb, b"out one\n", ERR)
        await print_main(sb, 1, b"out \xc3\xa9 two\n")
        await wait_log(sb, OUT, ERR)
        yield sb
    finally:
        await sb.delete()


@pytest.mark.slow  # each `rock` starts its own core and agent
async def test_logs_writes_each_stream_to_its_own_exact_bytes(printer: Sandbox) -> None:
    assert await rock("logs", printer.sandbox_id[:12]) == (0, OUT, ERR)


@pytest.mark.slow  # each `rock` starts its own core and agent
async def test_tail_since_and_timestamps(printer: Sandbox) -> None:
    sandbox_id = printer.sandbox_id
    assert await rock("logs", "-n", "1", sandbox_id) == (0, b"out \xc3\xa9 two\n", b"")
    assert await rock("logs", "--tail", "0", sandbox_id) == (0, b"", b"")
    assert await rock("logs", "--tail", "all", "--since", "1h", sandbox_id) == (0, OUT, ERR)
    assert await rock("logs", "--since", "2999-01-01T00:00:00Z", sandbox_id) == (0, b"", b"")
    code, out, err = await rock("logs", "-t", sandbox_id)
    assert code == 0
    assert re.fullmatch(STAMP + b"out one\n" + STAMP + b"out \xc3\xa9 two\n", out)
    assert re.fullmatch(STAMP + ERR, err)


@pytest.mark.slow  # each `rock` starts its own core and agent
async def test_follow_sees_later_output_and_ends_when_the_sandbox_stops(
    cluster: Cluster,
) -> None:
    sb = await start(cluster)
    try:
        await print_main(sb, 1, b"first\n")
        await wait_log(sb, b"first\n")
        async with await anyio.open_process([*ROCK, "logs", "-f", sb.sandbox_id]) as process:
            assert process.stdout is not None and process.stderr is not None
            lines = BufferedByteReceiveStream(process.stdout)
            with anyio.fail_after(60):
                assert await lines.receive_until(b"\n", 1 << 20) == b"first"
                await print_main(sb, 1, b"later\n")
                assert await lines.receive_until(b"\n", 1 << 20) == b"later"
                assert process.returncode is None
                await sb.stop()
                assert await process.wait() == 0
                assert await rest(lines) == b""
                assert await rest(process.stderr) == b""
    finally:
        await sb.delete()


@pytest.mark.slow  # each `rock` starts its own core and agent
async def test_ctrl_c_during_follow_exits_130(printer: Sandbox) -> None:
    command = [*ROCK, "logs", "--follow", "--tail", "1", printer.sandbox_id]
    async with await anyio.open_process(command) as process:
        assert process.stdout is not None and process.stderr is not None
        lines = BufferedByteReceiveStream(process.stdout)
        with anyio.fail_after(60):
            assert await lines.receive_until(b"\n", 1 << 20) == b"out \xc3\xa9 two"
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 130
            assert await rest(lines) == b""
            assert await rest(process.stderr) == b""


@pytest.mark.slow  # each `rock` starts its own core and agent
async def test_an_unknown_id_or_bad_option_exits_125_saying_why(docker_engine: None) -> None:
    code, out, err = await rock("logs", "no-such-sandbox-zz")
    assert (code, out) == (EXIT_ERROR, b"")
    assert err == b"rock logs: no sandbox 'no-such-sandbox-zz' on any host\n"
    code, _, err = await rock("logs", "-n", "-2", "no-such-sandbox-zz")
    assert (code, err) == (
        EXIT_ERROR,
        b"rock logs: --tail '-2' is not a number of lines (or 'all')\n",
    )
    code, _, err = await rock("logs", "--since", "yesterday", "no-such-sandbox-zz")
    assert code == EXIT_ERROR
    assert err.startswith(b"rock logs: --since 'yesterday' is not a duration (10m), a unix time")


async def test_sandbox_logs_reads_the_streams_apart(printer: Sandbox) -> None:
    assert await streams(printer) == (OUT, ERR)
    assert await streams(printer, tail=1) == (b"out \xc3\xa9 two\n", b"")
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    assert await streams(printer, since=future) == (b"", b"")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tail": -1}, "logs: tail must be a whole number of lines >= 0 or None, not -1"),
        ({"tail": 1.5}, "logs: tail must be a whole number of lines >= 0 or None, not 1.5"),
        ({"tail": True}, "logs: tail must be a whole number of lines >= 0 or None, not True"),
        ({"since": math.nan}, "logs: since must be a unix time in seconds or a datetime, not nan"),
        ({"since": "1h"}, "logs: since must be a unix time in seconds or a datetime, not '1h'"),
        ({"since": -5}, "logs: since must be a unix time >= 0, not -5"),
        ({"since": datetime.datetime(2024, 1, 1)}, "logs: since must be an aware datetime"),
        ({"follow": "yes"}, "logs: follow must be True or False, not 'yes'"),
        ({"timestamps": 1}, "logs: timestamps must be True or False, not 1"),
    ],
)
async def test_bad_arguments_are_bad_requests(
    printer: Sandbox, options: dict[str, object], message: str
) -> None:
    with pytest.raises(BadRequest, match=f"^{re.escape(message)}"):
        await streams(printer, **options)


async def test_the_logs_of_a_deleted_sandbox_are_not_found(cluster: Cluster) -> None:
    sb = await start(cluster)
    sandbox_id = sb.sandbox_id
    await sb.delete()
    with pytest.raises(SandboxNotFound, match=f"{sandbox_id}"):
        await streams(sb)
    never = Sandbox(SandboxConfig(image=SH_IMAGE))
    with pytest.raises(BadRequest, match="the sandbox has not been started"):
        await streams(never)
