"""`ExecuteStreamed` on `FakeRuntime`: stdin in and stdout/stderr out while the command runs,
under credit both ways (the real engine: tests/integration/test_cli_pipe_stream.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from rock_core import AgentConnection
from rock_core._errors import BadRequest, FileNotFound
from rock_core.protocol import (
    EXEC_STREAM,
    CreateSandbox,
    ExecReply,
    ExecResult,
    ExecuteStreamed,
    ProcessOutput,
    Reply,
    SandboxReply,
    StreamData,
    raise_for_reply,
)
from rock_sdk._streamed import one_error

from .test_fake_coverage import Fake, anyio_backend, covers, open_fake, spec

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio

BOX = "streamed"


class Exec:
    """One streamed command, driven by hand: what it printed so far, per stream."""

    def __init__(self, conn: AgentConnection, request: ExecuteStreamed) -> None:
        self.conn = conn
        self.request = request
        self.out = {"stdout": bytearray(), "stderr": bytearray()}
        self.result: ExecResult | None = None
        self.changed = anyio.Event()

    async def send(self, data: bytes, end: bool = False) -> None:
        await self.conn.gate(self.request.id).take()
        await self.conn.send(StreamData(id=self.request.id, data=data, end=end))

    async def wait_for(self, test: Callable[[], bool]) -> None:
        with anyio.fail_after(30):
            while not test():
                await self.changed.wait()
                self.changed = anyio.Event()


@asynccontextmanager
async def open_exec(fake: Fake, argv: list[str], **options: object) -> AsyncIterator[Exec]:
    conn = fake.conn
    request = ExecuteStreamed(sandbox_id=BOX, argv=argv, **options)  # type: ignore[arg-type]
    with one_error():
        async with conn.open_request(request) as answers, anyio.create_task_group() as tg:
            run = Exec(conn, request)
            await conn.grant(request.id, 1)  # one chunk at a time: credit is exercised

            async def read() -> None:
                async for message in answers:
                    if isinstance(message, ProcessOutput):
                        run.out[message.stream] += message.data
                        await conn.grant(request.id, 1)
                    elif isinstance(message, Reply):
                        run.result = raise_for_reply(message, ExecReply, request).result
                    run.changed.set()

            tg.start_soon(read)
            yield run
            await run.wait_for(lambda: run.result is not None)


async def make_box(fake: Fake) -> None:
    request = CreateSandbox(sandbox_id=BOX, spec=spec(workdir="/work"))
    await fake.conn.call(request, SandboxReply)


@covers(ExecuteStreamed)
async def test_input_reaches_the_command_as_it_is_sent_and_its_end_closes_stdin() -> None:
    async with open_fake() as fake:
        assert EXEC_STREAM in fake.conn.welcome.capabilities
        await make_box(fake)
        script = "while read -r line; do echo got:$line; echo err:$line >&2; done; exit 3"
        async with open_exec(fake, ["/bin/sh", "-c", script], stdin=True) as run:
            await run.send(b"a\n")
            # The first line comes back while the input is still open: nothing waits for it.
            await run.wait_for(lambda: bytes(run.out["stdout"]) == b"got:a\n")
            await run.send(b"b\n")
            await run.send(b"", end=True)
        assert run.result is not None
        assert bytes(run.out["stdout"]) == b"got:a\ngot:b\n"
        assert bytes(run.out["stderr"]) == b"err:a\nerr:b\n"
        assert (run.result.exit_code, run.result.stdout, run.result.truncated) == (3, b"", False)


@covers(ExecuteStreamed)
async def test_output_larger_than_a_chunk_streams_whole_under_credit() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        argv = ["/bin/sh", "-c", "head -c 3000000 /dev/zero; echo done >&2"]
        async with open_exec(fake, argv) as run:
            pass
        assert run.result is not None and run.result.exit_code == 0
        assert bytes(run.out["stdout"]) == bytes(3000000)
        assert bytes(run.out["stderr"]) == b"done\n"


@covers(ExecuteStreamed)
async def test_the_command_ending_first_ends_the_request_with_its_input_still_open() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        async with open_exec(fake, ["head", "-c", "3"], stdin=True) as run:
            await run.send(b"abcdef")  # and never an end: the command's end ends it
        assert run.result is not None
        assert (bytes(run.out["stdout"]), run.result.exit_code) == (b"abc", 0)


@covers(ExecuteStreamed)
async def test_output_limit_timeout_and_a_program_that_cannot_start() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        argv = ["/bin/sh", "-c", "head -c 5000 /dev/zero; head -c 10 /dev/zero >&2"]
        async with open_exec(fake, argv, output_limit=1024) as run:
            pass
        assert run.result is not None and run.result.truncated
        assert (len(run.out["stdout"]), len(run.out["stderr"])) == (1024, 10)

        async with open_exec(fake, ["/bin/sh", "-c", "echo a; sleep 1000"], timeout=0.5) as run:
            pass
        assert run.result is not None
        assert (run.result.timed_out, bytes(run.out["stdout"])) == (True, b"a\n")

        with pytest.raises(FileNotFound, match="no-such-program"):
            async with open_exec(fake, ["no-such-program"], stdin=True):
                pass
        with pytest.raises(BadRequest, match="argv"):
            await fake.conn.call(ExecuteStreamed(sandbox_id=BOX, argv=[]), ExecReply)
