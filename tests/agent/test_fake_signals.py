"""A fake sandbox's processes start with the signal handling a container's get, whatever the
process that runs the fake ignores (a test run by `nohup`, or as a shell's background job,
ignores SIGHUP, or SIGINT and SIGQUIT): an interrupt or a hang-up reaches them as it would."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from rock_agent._conformance_kit import OWNER, collect, spec
from rock_agent.testing import FakeRuntime
from rock_core import BadRequest

from ..conftest import SH_IMAGE

pytestmark = pytest.mark.anyio

SHOW = "grep -E '^SigIgn' /proc/self/status"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["inherited", "default"])
def ignoring(request: pytest.FixtureRequest) -> Iterator[None]:
    """This process ignores SIGHUP, SIGINT and SIGQUIT (as under `nohup ... &`), or nothing."""
    numbers = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
    before = {number: signal.getsignal(number) for number in numbers}
    if request.param == "inherited":
        for number in numbers:
            signal.signal(number, signal.SIG_IGN)
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


def ignored(shown: bytes) -> int:
    """The mask of ignored signals in a /proc status line."""
    return int(shown.split(b"SigIgn:")[1].split()[0], 16)


@pytest.mark.parametrize("terminal", [None, (24, 80)], ids=["pipes", "terminal"])
async def test_processes_ignore_no_signal(ignoring: None, terminal: tuple[int, int] | None) -> None:
    async with FakeRuntime(images=[SH_IMAGE]) as runtime:
        await runtime.create("sig", spec(SH_IMAGE), OWNER, runtime.uid)
        process = await runtime.exec(
            "sig", ["/bin/sh", "-c", SHOW], stdin=terminal is not None, terminal=terminal
        )
        try:
            out, _ = await collect(process)
            with anyio.fail_after(30):
                code = await process.wait()
        finally:
            await process.aclose()
        assert code == 0, out
        assert ignored(out) == 0, out


async def test_a_program_that_cannot_run_is_refused_either_way(
    ignoring: None, tmp_path: Path
) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o644)
    async with FakeRuntime(images=[SH_IMAGE]) as runtime:
        await runtime.create("sig", spec(SH_IMAGE), OWNER, runtime.uid)
        process = await runtime.exec("sig", [str(script)], stdin=False)
        try:
            with pytest.raises(BadRequest, match="permission denied"):
                await collect(process)
        finally:
            await process.aclose()
