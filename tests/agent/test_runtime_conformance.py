"""The runtime seam's conformance suite (`rock_agent.testing.CHECKS`), run on `FakeRuntime`
always and on `DockerRuntime` with the real engine (marked `docker`), so the fake cannot drift
from the real thing. Asyncio only: the agent side is (aiodocker)."""

from __future__ import annotations

import ast
import inspect
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from rock_agent import _conformance, _conformance_io, _conformance_kit, _conformance_pause
from rock_agent._docker import DockerRuntime, open_docker
from rock_agent._runtime import ContainerRuntime, EventAction
from rock_agent.testing import CHECKS, FakeRuntime, check_runtime

from ..conftest import SH_IMAGE

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def fake() -> AsyncIterator[ContainerRuntime]:
    async with FakeRuntime(images=[SH_IMAGE]) as runtime:
        yield runtime


@asynccontextmanager
async def docker() -> AsyncIterator[ContainerRuntime]:
    # A host id of its own: the event feed and listings see only this runtime's sandboxes.
    async with open_docker(None) as client:
        yield DockerRuntime(client, f"conformance-{secrets.token_hex(4)}")


@pytest.mark.parametrize("name", list(CHECKS))
async def test_fake_runtime(name: str) -> None:
    async with fake() as runtime:
        await CHECKS[name](runtime, SH_IMAGE)


@pytest.mark.docker
@pytest.mark.parametrize("name", list(CHECKS))
async def test_docker_runtime(name: str, docker_engine: None) -> None:
    async with docker() as runtime:
        await CHECKS[name](runtime, SH_IMAGE)


async def test_check_runtime_runs_every_check_and_names_a_failure() -> None:
    await check_runtime(fake, SH_IMAGE)

    class Broken(FakeRuntime):
        async def remove(self, sandbox_id: str) -> None:
            return  # forgets to remove

    @asynccontextmanager
    async def broken() -> AsyncIterator[ContainerRuntime]:
        async with Broken(images=[SH_IMAGE]) as runtime:
            yield runtime

    with pytest.raises(AssertionError, match="runtime check 'remove' failed: AssertionError"):
        await check_runtime(broken, SH_IMAGE)


async def test_the_main_process_check_fails_a_runtime_that_never_sees_it_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fake as it was: a sandbox whose main process ended stayed running, with no "die".
    class Unaware(FakeRuntime):
        async def _settle(self) -> None:
            return

        def _main_processes(self) -> list[Callable[[], Awaitable[None]]]:
            return []

    monkeypatch.setattr(_conformance, "STEP_TIMEOUT", 0.5)
    async with Unaware(images=[SH_IMAGE]) as runtime:
        with pytest.raises(TimeoutError):
            await CHECKS["main_process_exit"](runtime, SH_IMAGE)


async def test_the_main_process_check_reads_the_exit_code() -> None:
    class Codeless(FakeRuntime):
        def _event(self, box: Any, action: EventAction, exit_code: int | None = None) -> None:
            super()._event(box, action, None)

    async with Codeless(images=[SH_IMAGE]) as runtime:
        with pytest.raises(AssertionError, match="the die event's exit code is None"):
            await CHECKS["main_process_exit"](runtime, SH_IMAGE)


def test_checks_fail_under_python_O_too() -> None:
    script = "from rock_agent._conformance_kit import check; check(1 == 2, 'one is not two')"
    done = subprocess.run(
        [sys.executable, "-O", "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "AssertionError: one is not two" in done.stderr


@pytest.mark.parametrize(
    "module", [_conformance, _conformance_io, _conformance_kit, _conformance_pause]
)
def test_the_suite_has_no_bare_assert(module: ModuleType) -> None:
    tree = ast.parse(Path(inspect.getfile(module)).read_text())
    lines = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)]
    assert lines == [], f"{module.__name__} asserts at lines {lines}: use check()"
