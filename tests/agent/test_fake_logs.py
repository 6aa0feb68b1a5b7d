"""A sandbox's log through the agent on `FakeRuntime` (`ReadLogs`), and the pieces under it:
the engine's multiplexed stream (`_docker_logs`) and the fake's kept log (`_fake_logs`)."""

from __future__ import annotations

import os
import re

import anyio
import pytest

from rock_agent._conformance_logs import write_main
from rock_agent._docker_logs import LogDemuxer, log_params
from rock_agent._fake_logs import ContainerLog, rfc3339
from rock_agent._runtime import OutputChunk
from rock_core import LogChunk, SandboxNotFound, read_logs
from rock_core._protocol import CreateSandbox, ReadLogs, SandboxReply, StopSandbox

from .test_fake_coverage import Fake, anyio_backend, covers, open_fake, spec

__all__ = ["anyio_backend"]

BOX = "logs"


async def make_box(fake: Fake) -> None:
    conn = fake.conn
    await conn.call(CreateSandbox(id=conn.next_id(), sandbox_id=BOX, spec=spec()), SandboxReply)


async def read_all(fake: Fake, **options: object) -> list[LogChunk]:
    with anyio.fail_after(10):
        return [chunk async for chunk in read_logs(fake.conn, BOX, **options)]  # type: ignore[arg-type]


@pytest.mark.anyio
@covers(ReadLogs)
async def test_the_log_streams_each_line_with_its_stream_exactly() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        assert "logs" in fake.conn.welcome.capabilities
        assert await read_all(fake) == []
        await write_main(fake.runtime, BOX, 1, b"one\r\n\x00two\n")
        await write_main(fake.runtime, BOX, 2, b"err\n")
        assert await read_all(fake) == [
            LogChunk("stdout", b"one\r\n\x00two\n"),
            LogChunk("stderr", b"err\n"),
        ]
        assert await read_all(fake, tail=1) == [LogChunk("stderr", b"err\n")]
        assert await read_all(fake, since=4e9) == []
        stamped = await read_all(fake, tail=1, timestamps=True)
        assert len(stamped) == 1
        assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z err\n", stamped[0].data)


@pytest.mark.anyio
@covers(ReadLogs, StopSandbox)
async def test_a_long_log_arrives_whole_under_credit_and_follow_ends_with_the_sandbox() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        lines = b"".join(b"line %05d\n" % n for n in range(60000))  # 600 KB: 3 events or more
        for at in range(0, len(lines), 60000):  # a pipe holds 64 KiB until the log is read
            await write_main(fake.runtime, BOX, 1, lines[at : at + 60000])
            assert await read_all(fake, tail=0) == []
        seen: list[LogChunk] = []
        later = anyio.Event()
        ended = anyio.Event()

        async def follow() -> None:
            async for chunk in read_logs(fake.conn, BOX, follow=True):
                seen.append(chunk)
                if chunk.data == b"later\n":
                    later.set()
            ended.set()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await write_main(fake.runtime, BOX, 2, b"later\n")
                await later.wait()
                assert not ended.is_set()
                stop = StopSandbox(id=fake.conn.next_id(), sandbox_id=BOX, timeout=0)
                await fake.conn.call(stop, SandboxReply)
        assert b"".join(c.data for c in seen if c.stream == "stdout") == lines
        assert seen[-1] == LogChunk("stderr", b"later\n")


@pytest.mark.anyio
@covers(ReadLogs)
async def test_a_missing_sandbox_or_another_owners_is_not_found() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        with pytest.raises(SandboxNotFound, match="no sandbox 'none' on host"):
            [c async for c in read_logs(fake.conn, "none")]
        async with fake.connect("someone-else") as other:
            with pytest.raises(SandboxNotFound, match=f"no sandbox '{BOX}' on host"):
                [c async for c in read_logs(other, BOX)]
        async with fake.connect("admin", admin=True) as admin:
            assert [c async for c in read_logs(admin, BOX)] == []


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def test_the_demuxer_splits_frames_across_any_read_boundaries() -> None:
    stream = (
        frame(1, b"a\n") + frame(1, b"b\n") + frame(2, b"\xffc\n") + frame(1, b"") + frame(1, b"d")
    )
    for size in (1, 3, 8, 11, len(stream)):
        demuxer = LogDemuxer()
        found: list[OutputChunk] = []
        for at in range(0, len(stream), size):
            found.extend(demuxer.feed(stream[at : at + size]))
        assert b"".join(c.data for c in found if c.stream == "stdout") == b"a\nb\nd"
        assert b"".join(c.data for c in found if c.stream == "stderr") == b"\xffc\n"
        assert demuxer.pending == 0
    whole = LogDemuxer().feed(stream)  # pieces of one read, one stream after another: joined
    assert whole == [
        OutputChunk("stdout", b"a\nb\n"),
        OutputChunk("stderr", b"\xffc\n"),
        OutputChunk("stdout", b"d"),
    ]


def test_log_params_say_what_the_engine_reads() -> None:
    assert log_params(follow=False, tail=None, since=0.0, timestamps=False) == {
        "stdout": "1",
        "stderr": "1",
        "follow": "0",
        "timestamps": "0",
        "tail": "all",
    }
    params = log_params(follow=True, tail=0, since=1700000000.25, timestamps=True)
    assert (params["follow"], params["timestamps"], params["tail"]) == ("1", "1", "0")
    assert params["since"] == "1700000000.250000000"


def test_the_fake_log_keeps_lines_up_to_its_cap_and_a_partial_line_until_its_end() -> None:
    log = ContainerLog(cap=22)
    out, err = log.open()
    try:
        os.write(out, b"0123456789\nabcdefghi\nxyz")
        log.drain()
        assert [line.data for line in log.lines] == [b"0123456789\n", b"abcdefghi\n"]
        os.write(out, b"\n")
        os.write(err, b"tail")
        log.drain()
        # The oldest line went to keep at most 22 bytes; the partial "tail" waits for its newline.
        assert [(line.stream, line.data) for line in log.lines] == [
            ("stdout", b"abcdefghi\n"),
            ("stdout", b"xyz\n"),
        ]
    finally:
        os.close(out)
        os.close(err)
    log.close()
    assert not log.open_now
    assert [line.data for line in log.lines][-1] == b"tail"


def test_rfc3339_stamps_as_the_engine_does() -> None:
    assert rfc3339(0.5) == "1970-01-01T00:00:00.500000000Z"
    assert rfc3339(1700000000.0) == "2023-11-14T22:13:20.000000000Z"
