"""Terminals (`OpenTerminal`, `ResizeTerminal`) through the agent on `FakeRuntime`, driven by
the SDK's `Terminal`: the fake's programs run on a real pseudo-terminal of this host."""

from __future__ import annotations

import math

import anyio
import pytest

from rock_core import BadRequest, FileNotFound, NotFound, SandboxNotFound
from rock_core._protocol import (
    CreateSandbox,
    Done,
    OpenTerminal,
    ResizeTerminal,
    SandboxReply,
    TerminalReply,
)
from rock_sdk import Terminal
from rock_sdk._terminal import open_terminal

from .test_fake_coverage import Fake, anyio_backend, covers, open_fake, spec

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio

BOX = "term"
STEP = 20  # seconds any one step may take


async def make_box(fake: Fake) -> None:
    await fake.conn.call(CreateSandbox(sandbox_id=BOX, spec=spec()), SandboxReply)


async def shown_until(term: Terminal, wanted: bytes) -> bytes:
    """What the terminal shows up to `wanted` (its end fails the test)."""
    seen = b""
    with anyio.fail_after(STEP):
        while wanted not in seen:
            chunk = await term.receive()
            assert chunk, f"the terminal ended before showing {wanted!r}: {seen!r}"
            seen += chunk
    return seen


@covers(OpenTerminal, ResizeTerminal)
async def test_a_shell_sees_its_size_a_resize_and_exits_with_its_code() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        async with await open_terminal(fake.conn, BOX, rows=33, cols=101) as term:
            await term.send("tty; stty size; echo at-$((1 + 1))\n")
            shown = await shown_until(term, b"at-2")
            assert len(fake.server.terminals) == 1  # known while open
            assert b"/dev/pts/" in shown and b"33 101" in shown
            await term.resize(44, 120)
            await term.send(b"stty size; echo $TERM-$((2 + 1)); exit 3\n")
            shown = await shown_until(term, b"-3")
            assert b"44 120" in shown and b"xterm-3" in shown
            with anyio.fail_after(STEP):
                assert await term.wait() == 3
        assert not fake.server.terminals  # forgotten once done


async def test_end_of_input_is_a_ctrl_d_and_input_after_the_end_is_dropped() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        term = await open_terminal(fake.conn, BOX, ["cat"], env={"A": "1"})
        try:
            await term.send("hello\n")
            await shown_until(term, b"hello\r\nhello")  # the echo, then cat's copy
            await term.close_input()
            with anyio.fail_after(STEP):
                assert await term.wait() == 0
            await term.send("ignored\n")  # the program is gone: dropped, as a terminal does
            assert await term.receive() == b""
        finally:
            await term.aclose()


async def test_a_program_that_cannot_start_is_its_error() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        async with await open_terminal(fake.conn, BOX, ["rock-no-such-program"]) as term:
            with pytest.raises(FileNotFound, match="rock-no-such-program") as info:
                await term.wait()
            assert BOX in str(info.value)


async def test_an_unknown_sandbox_is_not_found() -> None:
    async with open_fake() as fake:
        async with await open_terminal(fake.conn, "no-such-box") as term:
            with pytest.raises(SandboxNotFound, match="no sandbox 'no-such-box'"):
                await term.receive()


async def test_a_resize_reaches_only_a_terminal_open_on_its_own_link() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        with pytest.raises(NotFound, match=f"no terminal 9999 is open in sandbox {BOX}"):
            await fake.conn.call(
                ResizeTerminal(sandbox_id=BOX, terminal=9999, rows=10, cols=10), Done
            )
        async with await open_terminal(fake.conn, BOX, ["cat"]) as term:
            await term.send("x\n")
            await shown_until(term, b"x\r\nx")
            request_id = next(iter(fake.server.terminals))[1]
            async with fake.connect() as other:
                with pytest.raises(NotFound, match=f"no terminal {request_id} is open"):
                    resize = ResizeTerminal(sandbox_id=BOX, terminal=request_id, rows=9, cols=9)
                    await other.call(resize, Done)
            await term.close_input()
            assert await term.wait() == 0


BAD_SIZES = [
    (0, 80, r"rows.*>= 1"),
    (-5, 80, r"rows.*>= 1"),
    (24, 10_001, r"cols.*<= 10000"),
    (1 << 40, 80, r"rows.*<= 10000"),
    (math.nan, 80, r"rows.*Expected `int`, got `float`"),
    (24.0, 80, r"rows.*Expected `int`, got `float`"),
    ("24", 80, r"rows.*Expected `int`, got `str`"),
    (True, 80, r"rows.*Expected `int`, got `bool`"),
    (None, 80, r"rows None.*Expected `int`, got `None`"),
]


@pytest.mark.parametrize(("rows", "cols", "message"), BAD_SIZES)
async def test_bad_sizes_are_bad_requests_before_anything_is_sent(
    rows: object, cols: object, message: str
) -> None:
    async with open_fake() as fake:
        await make_box(fake)
        with pytest.raises(BadRequest, match=message):
            await open_terminal(fake.conn, BOX, rows=rows, cols=cols)  # type: ignore[arg-type]
        async with await open_terminal(fake.conn, BOX, ["cat"]) as term:
            with pytest.raises(BadRequest, match=message):
                await term.resize(rows, cols)  # type: ignore[arg-type]
            await term.close_input()
            assert await term.wait() == 0
        assert not fake.server.terminals


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cmd": 42}, r"cmd must be a list such as"),
        ({"cmd": []}, r"cmd must not be empty"),
        ({"cmd": ["ok", 3]}, r"argv.*Expected `str`, got `int`"),
        ({"env": ["A=1"]}, r"env must be a dict"),
        ({"cwd": 7}, r"cwd must be a str"),
        ({"cwd": "relative"}, r"cwd"),
    ],
)
async def test_bad_commands_are_bad_requests(changes: dict[str, object], message: str) -> None:
    async with open_fake() as fake:
        with pytest.raises(BadRequest, match=message):
            await open_terminal(fake.conn, BOX, **changes)  # type: ignore[arg-type]


async def test_the_reply_carries_the_exit_code_and_the_bytes_both_ways() -> None:
    reply = TerminalReply(id=1, exit_code=None)
    assert (reply.exit_code, reply.bytes_in, reply.bytes_out) == (None, 0, 0)


async def test_an_abandoned_terminal_is_hung_up() -> None:
    async with open_fake() as fake:
        await make_box(fake)
        term = await open_terminal(fake.conn, BOX, ["/bin/sh", "-c", "echo pid=$$; exec sleep 600"])
        try:
            shown = await shown_until(term, b"\n")
        finally:
            await term.aclose()  # before its program ended: a terminal that closes
        pid = int(shown.split(b"pid=")[1].split()[0])
        with anyio.fail_after(STEP):
            while True:
                if not _alive(pid):
                    break
                await anyio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return ") Z " not in stat.read()  # a zombie has ended
    except FileNotFoundError:
        return False
