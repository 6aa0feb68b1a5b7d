"""The agent's sessions, interactive commands and one-off commands, on `FakeRuntime`.

The shells are real (bash, through the session's wrapper); files are named relative to the
working folder, as a fake sandbox's processes see the host's files at absolute paths.
"""

from __future__ import annotations

import anyio
import pytest

from rock_core._errors import AlreadyExists, FileNotFound, SessionNotFound
from rock_core._protocol import (
    Cancel,
    CloseSession,
    CommandReply,
    CreateSandbox,
    CreateSession,
    Done,
    ExecReply,
    Execute,
    Expect,
    ExpectReply,
    Interrupt,
    Output,
    RunCommand,
    SandboxReply,
    SendInput,
    WaitCommand,
)

from .test_fake_coverage import Fake, anyio_backend, covers, open_fake, spec

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio

BOX = "cmds"


async def with_session(fake: Fake, session: str = "main") -> None:
    conn = fake.conn
    await conn.call(
        CreateSandbox(id=conn.next_id(), sandbox_id=BOX, spec=spec(workdir="/work")), SandboxReply
    )
    request = CreateSession(id=conn.next_id(), sandbox_id=BOX, session=session, env={"X": "1"})
    await conn.call(request, Done)


async def run(fake: Fake, command: str, session: str = "main") -> CommandReply:
    conn = fake.conn
    request = RunCommand(
        id=conn.next_id(), sandbox_id=BOX, session=session, command=command, stream=False
    )
    return await conn.call(request, CommandReply)


@covers(CreateSandbox, CreateSession, RunCommand, CloseSession)
async def test_a_session_keeps_its_state_between_commands() -> None:
    async with open_fake() as fake:
        await with_session(fake)
        assert (await run(fake, "cd sub 2>/dev/null || mkdir sub; Y=$X$X")).result.exit_code == 0
        reply = await run(fake, "cd sub; echo $Y; printf x > file; sh -c 'exit 3'")
        assert (reply.result.output, reply.result.exit_code) == (b"11\n", 3)
        assert (fake.runtime.sandbox_root(BOX) / "work/sub/file").read_bytes() == b"x"
        assert (await run(fake, "echo oops >&2; false")).result.output == b"oops\n"
        conn = fake.conn
        with pytest.raises(AlreadyExists, match="sandbox cmds already has a session 'main'"):
            await conn.call(
                CreateSession(id=conn.next_id(), sandbox_id=BOX, session="main", env={}), Done
            )
        await conn.call(CloseSession(id=conn.next_id(), sandbox_id=BOX, session="main"), Done)
        with pytest.raises(SessionNotFound, match="sandbox cmds has no session 'main'"):
            await run(fake, "true")


@covers(RunCommand)
async def test_streamed_output_comes_as_it_is_printed() -> None:
    async with open_fake() as fake:
        await with_session(fake)
        conn = fake.conn
        request = RunCommand(
            id=conn.next_id(), sandbox_id=BOX, session="main", command="echo one; echo two"
        )
        chunks = bytearray()
        async with conn.open_request(request) as answers:
            async for message in answers:
                if isinstance(message, Output):
                    chunks += message.data
                else:
                    assert isinstance(message, CommandReply)
                    assert (message.result.output, message.result.exit_code) == (b"", 0)
                    break
        assert bytes(chunks) == b"one\ntwo\n"


@covers(RunCommand, SendInput, Expect, WaitCommand, Interrupt)
async def test_an_interactive_command_is_driven_and_interrupted() -> None:
    async with open_fake() as fake:
        await with_session(fake)
        conn = fake.conn

        async def start(command: str) -> None:
            request = RunCommand(
                id=conn.next_id(), sandbox_id=BOX, session="main", command=command, interactive=True
            )
            await conn.call(request, Done)

        await start("read name; echo hello $name")
        await conn.call(
            SendInput(id=conn.next_id(), sandbox_id=BOX, session="main", data=b"rock\n"), Done
        )
        found = await conn.call(
            Expect(id=conn.next_id(), sandbox_id=BOX, session="main", patterns=[r"hello (\w+)"]),
            ExpectReply,
        )
        assert (found.index, found.match) == (0, b"hello rock"), found
        done = await conn.call(
            WaitCommand(id=conn.next_id(), sandbox_id=BOX, session="main"), CommandReply
        )
        assert done.result.exit_code == 0
        await start("sleep 1000")
        await conn.call(Interrupt(id=conn.next_id(), sandbox_id=BOX, session="main"), Done)
        ended = await conn.call(
            WaitCommand(id=conn.next_id(), sandbox_id=BOX, session="main", timeout=30),
            CommandReply,
        )
        assert ended.result.exit_code == 130 and not ended.result.session_closed, ended.result
        assert (await run(fake, "echo still here")).result.output == b"still here\n"


@covers(RunCommand)
async def test_a_timeout_ends_the_command_and_keeps_the_session() -> None:
    async with open_fake() as fake:
        await with_session(fake)
        conn = fake.conn
        request = RunCommand(
            id=conn.next_id(),
            sandbox_id=BOX,
            session="main",
            command="echo begun; sleep 1000",
            timeout=0.5,
            stream=False,
        )
        reply = await conn.call(request, CommandReply)
        assert reply.result.timed_out and reply.result.output.startswith(b"begun\n"), reply.result
        assert (await run(fake, "echo after")).result.output == b"after\n"


@covers(RunCommand, Cancel, Execute)
async def test_a_cancelled_command_leaves_the_agent_serving() -> None:
    async with open_fake() as fake:
        await with_session(fake)
        conn = fake.conn
        request = RunCommand(
            id=conn.next_id(), sandbox_id=BOX, session="main", command="echo go; sleep 1000"
        )
        with anyio.fail_after(30):
            async with conn.open_request(request) as answers:
                async for message in answers:
                    assert isinstance(message, Output) and message.data == b"go\n"
                    break  # leaving the block cancels the request on the agent
        result = (
            await conn.call(
                Execute(id=conn.next_id(), sandbox_id=BOX, argv=["echo", "ok"], env={}), ExecReply
            )
        ).result
        assert (result.stdout, result.exit_code) == (b"ok\n", 0)


@covers(Execute)
async def test_execute_keeps_stdout_and_stderr_apart_and_feeds_stdin() -> None:
    async with open_fake() as fake:
        await with_session(fake)
        conn = fake.conn

        async def execute(argv: list[str], timeout: float | None = None) -> ExecReply:
            request = Execute(id=conn.next_id(), sandbox_id=BOX, argv=argv, env={}, timeout=timeout)
            return await conn.call(request, ExecReply)

        script = 'cat; printf "$V" >&2; printf "[$(cat ../hello)]"; exit 4'
        (fake.runtime.sandbox_root(BOX) / "work/d").mkdir()
        (fake.runtime.sandbox_root(BOX) / "work/hello").write_bytes(b"hi")
        request = Execute(
            id=conn.next_id(),
            sandbox_id=BOX,
            argv=["/bin/sh", "-c", script],
            env={"V": "err"},
            cwd="/work/d",
            stdin=b"in:",
        )
        result = (await conn.call(request, ExecReply)).result
        assert (result.stdout, result.stderr, result.exit_code) == (b"in:[hi]", b"err", 4)
        slow = (await execute(["sleep", "1000"], timeout=0.5)).result
        assert slow.timed_out and slow.exit_code == 137, slow
        with pytest.raises(FileNotFound, match="program 'rock-no-such' not found on the PATH"):
            await execute(["rock-no-such"])
