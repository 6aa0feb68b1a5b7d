"""`Sandbox.open_terminal` on real Docker: a program on a real pseudo-terminal in a sandbox."""

from __future__ import annotations

import anyio
import pytest

from rock_sdk import BadRequest, Sandbox, SandboxConfig, Terminal

from ..conftest import SH_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def shown(term: Terminal) -> bytes:
    seen = b""
    with anyio.fail_after(60):
        while chunk := await term.receive():
            seen += chunk
    return seen


async def test_a_command_sees_its_terminal_and_its_exit_code_comes_back(
    docker_engine: None,
) -> None:
    async with Sandbox(SandboxConfig(image=SH_IMAGE, memory="64m")) as sb:
        async with await sb.open_terminal(
            "tty; stty size; echo $A; exit 5", rows=7, cols=9, env={"A": "set"}, cwd="/tmp"
        ) as term:
            out = await shown(term)
            assert b"/dev/pts/" in out and b"7 9\r\n" in out and b"set\r\n" in out
            assert await term.wait() == 5
        with pytest.raises(BadRequest, match=r"rows.*>= 1"):
            await sb.open_terminal(rows=0)
        async with await sb.open_terminal(["cat"]) as term:
            with pytest.raises(BadRequest, match=r"cols.*<= 10000"):
                await term.resize(10, 10**6)
            await term.send("x\n")
            await term.close_input()
            assert (await shown(term)).count(b"x") == 2  # the echo, then cat's copy
            assert await term.wait() == 0


async def test_an_abandoned_terminal_is_hung_up(docker_engine: None) -> None:
    # As on the fake runtime, whose terminal's program loses its terminal (SIGHUP): the engine
    # itself leaves an exec running when its attached stream closes.
    async with Sandbox(SandboxConfig(image=SH_IMAGE, memory="64m")) as sb:
        term = await sb.open_terminal("echo started; exec sleep 4321")
        try:
            with anyio.fail_after(60):
                while b"started" not in await term.receive():
                    pass
        finally:
            await term.aclose()
        with anyio.fail_after(60):
            while True:
                if "sleep 4321" not in (await sb.execute(["ps"])).stdout:
                    break
                await anyio.sleep(0.1)
