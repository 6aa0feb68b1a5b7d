"""How much of a command's output the agent holds, and what reaches the file (`_spill.Output`),
with an in-memory file in place of the sandbox's."""

from __future__ import annotations

import os

import pytest

from rock_agent._spill import STREAMED_HELD, Output

pytestmark = pytest.mark.anyio


class MemoryFile:
    def __init__(self) -> None:
        self.data = bytearray()
        self.finished = False

    async def write(self, data: bytes) -> None:
        self.data += data

    async def finish(self) -> bool:
        self.finished = True
        return True

    async def abort(self) -> None:
        pass


async def feed(output: Output, chunks: list[bytes]) -> None:
    for chunk in chunks:
        await output.add(chunk)


@pytest.fixture
def file() -> MemoryFile:
    return MemoryFile()


async def test_a_held_command_keeps_its_limit_and_spills_the_whole(file: MemoryFile) -> None:
    async def open_spill(path: str) -> MemoryFile:
        return file

    chunks = [os.urandom(7) for _ in range(5)]
    output = Output(20, None, open_spill, "/tmp/x")
    await feed(output, chunks)
    whole = b"".join(chunks)
    assert (bytes(output.head), output.total, output.truncated) == (whole[:20], 35, True)
    assert await output.finish() == "/tmp/x" and bytes(file.data) == whole


async def test_a_streamed_command_holds_a_bounded_part_and_files_all(file: MemoryFile) -> None:
    async def open_spill(path: str) -> MemoryFile:
        return file

    sent = bytearray()

    async def on_output(data: bytes) -> None:
        sent.extend(data)

    chunks = [os.urandom(100_000) for _ in range(30)] + [b"tail"]  # about 3 MB, under the limit
    output = Output(1 << 30, on_output, open_spill, "/tmp/y")
    await feed(output, chunks)
    whole = b"".join(chunks)
    assert len(output.head) <= STREAMED_HELD and bytes(output.head) == whole[: len(output.head)]
    assert bytes(sent) == whole and not output.truncated
    assert await output.finish() == "/tmp/y" and bytes(file.data) == whole


async def test_a_small_streamed_command_opens_no_file() -> None:
    async def open_spill(path: str) -> MemoryFile:
        raise AssertionError("no file for a small output")

    sent = bytearray()

    async def on_output(data: bytes) -> None:
        sent.extend(data)

    output = Output(1 << 30, on_output, open_spill, "/tmp/z")
    await feed(output, [b"a" * 1000] * 10)
    assert bytes(sent) == bytes(output.head) == b"a" * 10_000
    assert await output.finish() == ""
