"""Answers larger than a frame (16 MiB), on a real agent and real Docker: each is refused or
cut with a clear word, and the link (and every other request on it) goes on."""

from __future__ import annotations

import pytest

from rock_agent._execute import STDERR_LIMIT, STDOUT_LIMIT
from rock_core._protocol import ExecReply, Execute
from rock_core._schema import MAX_DATA
from rock_sdk import BadRequest, Sandbox

pytestmark = pytest.mark.anyio

BIG = 20_000_000  # bytes: more than a frame holds


async def _still_serves(sandbox: Sandbox) -> None:
    result = await sandbox.arun("echo still here")
    assert result.output == "still here\n"


async def test_reading_a_file_larger_than_a_reply_points_at_download(py_sandbox: Sandbox) -> None:
    await py_sandbox.execute(["sh", "-c", f"head -c {BIG} /dev/zero > /tmp/big.bin"], check=True)
    with pytest.raises(BadRequest) as caught:
        await py_sandbox.read_file("/tmp/big.bin")
    assert caught.value.message == (
        "/tmp/big.bin is larger than 15 MiB, the most read_file() returns; use download()"
    )
    await _still_serves(py_sandbox)
    await py_sandbox.execute(["sh", "-c", f"head -c {MAX_DATA} /dev/zero > /tmp/max.bin"])
    assert await py_sandbox.read_file("/tmp/max.bin") == bytes(MAX_DATA)


async def test_writing_a_file_larger_than_a_request_points_at_upload(py_sandbox: Sandbox) -> None:
    with pytest.raises(BadRequest) as caught:
        await py_sandbox.write_file("/tmp/w.bin", bytes(BIG))
    assert caught.value.message == (
        f"write_file takes at most 15 MiB ({BIG} bytes given); use upload() for larger files"
    )
    await _still_serves(py_sandbox)
    await py_sandbox.write_file("/tmp/w.bin", bytes(MAX_DATA))
    assert (await py_sandbox.arun("wc -c < /tmp/w.bin")).output == f"{MAX_DATA}\n"


async def test_exec_output_past_a_reply_is_cut_and_said_so(py_sandbox: Sandbox) -> None:
    result = await py_sandbox.execute(
        ["sh", "-c", f"head -c {BIG} /dev/zero; head -c {BIG} /dev/zero >&2"]
    )
    assert (len(result.stdout_bytes), len(result.stderr_bytes)) == (STDOUT_LIMIT, STDERR_LIMIT)
    assert result.exit_code == 0 and result.truncated
    assert not (await py_sandbox.execute(["echo", "hi"])).truncated
    conn = py_sandbox.cluster.connection(py_sandbox.sandbox_id)
    small = Execute(id=conn.next_id(), sandbox_id=py_sandbox.sandbox_id, argv=["echo", "hi"])
    assert (await conn.call(small, ExecReply)).result.truncated is False
    # An endless flood is read and dropped: the agent keeps a bounded part, the timeout ends it.
    endless = Execute(
        id=conn.next_id(), sandbox_id=py_sandbox.sandbox_id, argv=["cat", "/dev/zero"], timeout=3
    )
    flood = (await conn.call(endless, ExecReply)).result
    assert (flood.timed_out, flood.truncated, len(flood.stdout)) == (True, True, STDOUT_LIMIT)
    await _still_serves(py_sandbox)


async def test_held_command_output_is_bounded_and_streamed_output_is_not(
    py_sandbox: Sandbox,
) -> None:
    with pytest.raises(BadRequest) as caught:
        await py_sandbox.arun("head -c 20M /dev/zero", output_limit=32 << 20)
    assert caught.value.message == (
        f"output_limit {32 << 20} is over 15 MiB, the most a reply holds: stream larger output"
        " (on_output) or read all of it from the result's output_path"
    )
    with pytest.raises(BadRequest):
        await py_sandbox.start_interactive("cat", output_limit=32 << 20)
    held = await py_sandbox.arun("head -c 20M /dev/zero", output_limit=MAX_DATA)
    assert (len(held.output_bytes), held.truncated, held.total_bytes) == (MAX_DATA, True, 20 << 20)
    assert (await py_sandbox.arun(f"wc -c < {held.output_path}")).output == f"{20 << 20}\n"
    got = bytearray()

    async def keep(chunk: bytes) -> None:
        got.extend(chunk)

    streamed = await py_sandbox.arun("head -c 20M /dev/zero", output_limit=32 << 20, on_output=keep)
    assert (len(got), streamed.truncated) == (20 << 20, False)
    await _still_serves(py_sandbox)
