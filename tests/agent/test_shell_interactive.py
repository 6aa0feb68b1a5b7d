"""A session's interactive command over a scripted shell process: a start that never comes, and
an `expect` over a flood keeps a bounded window."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import anyio
import pytest

from rock_agent import _expect, _shell
from rock_agent._runtime import OutputChunk, ProcessState
from rock_agent._shell import ShellSession
from rock_core._errors import SandboxFailed, SessionClosed, TimedOut

pytestmark = pytest.mark.anyio

CHUNK = 1 << 16


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the agent runs on asyncio only


class _Process:
    """The parts of a `Process` these shells share: no pid, no exit code."""

    sandbox_id = "sb"

    async def close_input(self) -> None:
        pass

    async def state(self) -> ProcessState:
        return ProcessState(0, None, False)

    async def wait(self) -> int | None:
        return None


class ScriptedStream(_Process):
    """A shell's process: what it prints for a command line comes from `script(marker)`."""

    def __init__(self, script: Callable[[bytes], AsyncIterator[bytes | None]]) -> None:
        self._script = script
        self._lines: AsyncIterator[bytes | None] | None = None
        self.closed = False
        self.largest_buffer = 0
        self.session: ShellSession | None = None

    async def write(self, data: bytes) -> None:
        found = re.search(rb"__rock_m='([^']+)'", data)
        if found and self._lines is None:
            self._lines = self._script(found.group(1))

    async def read(self) -> OutputChunk | None:
        if self.session is not None:
            self.largest_buffer = max(self.largest_buffer, len(self.session.buffer))
        if self._lines is None:
            await anyio.sleep_forever()
        assert self._lines is not None
        data = await self._lines.__anext__()
        return None if data is None else OutputChunk("stdout", data)

    async def aclose(self) -> None:
        self.closed = True


def session_on(stream: ScriptedStream) -> ShellSession:
    session = ShellSession("s", stream, None)
    stream.session = session
    return session


async def test_a_start_line_that_never_comes_times_out_and_closes_the_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def silent(marker: bytes) -> AsyncIterator[bytes | None]:
        yield b"noise\n"
        await anyio.sleep_forever()

    monkeypatch.setattr(_shell, "START_TIMEOUT", 0.2)
    stream = ScriptedStream(silent)
    session = session_on(stream)
    with pytest.raises(TimedOut) as timed_out:
        await session.start_interactive("cat", 1000)
    assert str(timed_out.value) == (
        "session 's': the interactive command 'cat' did not start within 0.2 s (the shell did "
        "not run it); the session was closed, as the shell could still read later input as "
        "commands"
    )
    assert timed_out.value.details["output"] == "noise\n"
    assert (session.closed, stream.closed) == (True, True)
    with pytest.raises(SessionClosed, match=r"^session 's' is closed \(its shell has exited\)$"):
        await session.send(b"x\n")


async def test_a_shell_that_ends_before_the_start_line_is_a_closed_session() -> None:
    async def dies(marker: bytes) -> AsyncIterator[bytes | None]:
        yield b"sh: killed\n"
        yield None

    session = session_on(ScriptedStream(dies))
    with pytest.raises(SessionClosed) as closed:
        await session.start_interactive("cat", 1000)
    assert str(closed.value) == (
        "session 's' is closed: its shell exited before the interactive command 'cat' started"
    )
    assert closed.value.details["output"] == "sh: killed\n"
    with pytest.raises(SessionClosed, match=r"^session 's' is closed \(its shell has exited\)$"):
        await session.run("echo hi", timeout=5, idle_timeout=None, output_limit=100)


async def test_expect_over_a_flood_keeps_a_window_and_counts_the_rest_as_output() -> None:
    chunks = 100

    async def flood(marker: bytes) -> AsyncIterator[bytes | None]:
        yield b"noise" + marker + b"s\n"
        for _ in range(chunks):
            yield b"y\n" * (CHUNK // 2)
        yield marker + b"0\n"
        await anyio.sleep_forever()

    stream = ScriptedStream(flood)
    session = session_on(stream)
    await session.start_interactive("yes", 1000)
    command = session._interactive
    assert command is not None
    with anyio.fail_after(60):
        index, before, match = await session.expect(["NEVER"], timeout=60)
    assert (index, match) == (-1, b"")
    assert stream.largest_buffer <= _expect.WINDOW + CHUNK
    assert len(before) <= _expect.WINDOW + CHUNK
    # The bytes dropped from the window are the command's output, as `wait` reports it.
    assert command.output.total + len(before) == chunks * CHUNK
    assert command.output.head == b"y\n" * 500


class RefusingStream(_Process):
    """An exec the runtime refused: its output says why, then ends."""

    def __init__(self, reason: bytes) -> None:
        self._reason: bytes | None = reason

    async def write(self, data: bytes) -> None:
        pass

    async def read(self) -> OutputChunk | None:
        reason, self._reason = self._reason, None
        return None if reason is None else OutputChunk("stdout", reason)

    async def aclose(self) -> None:
        pass


async def test_a_shell_the_runtime_refuses_is_a_typed_error() -> None:
    async def open_exec(argv: list[str]) -> RefusingStream:
        return RefusingStream(b"cannot exec in a stopped state: unknown\r\n")

    with pytest.raises(SandboxFailed) as caught:
        await ShellSession.open("s", open_exec)
    assert str(caught.value).startswith(
        "session 's': the shell did not start: the sandbox is not running (its processes have "
        "all ended): start it again, or delete it"
    ), caught.value
