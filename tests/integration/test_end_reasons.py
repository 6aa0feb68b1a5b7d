"""Ends that the agent sees on its own: a sandbox's init exits, or the kernel OOM-kills it.

One suite on both runtimes (the fake and real Docker), through the real agent in this process
and a core over memory: the agent reads the engine's "die", asks the engine whether the OOM
killer struck, and tells the core why (`SandboxChanged.end`, capability "end-reasons").

On Docker the sandbox's main process is a script (in place of the keep-alive) that waits for
a word in /tmp/go: a number is its exit code, "oom" makes it allocate until the kernel kills it
in its 16 MiB. On the fake, `FakeRuntime.crash` ends it so. Also real Docker: idle and lifetime
timeouts and a user's stop, seen in order on `cluster.events()`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from rock_agent import _docker_json
from rock_agent._docker import DockerRuntime
from rock_agent._engine import open_docker
from rock_agent._open import open_agent
from rock_agent.testing import AgentConnector, FakeRuntime
from rock_core import (
    BadRequest,
    Cluster,
    EndReason,
    LifecycleEvent,
    SandboxSpec,
    SandboxState,
    open_cluster,
)
from rock_core._event_feed import Subscription
from rock_core.protocol import Done, WriteFile
from rock_sdk import SandboxConfig
from rock_sdk import open_cluster as open_sdk_cluster

from ..conftest import SH_IMAGE

pytestmark = pytest.mark.anyio

S = SandboxState
SCRIPT = (
    "while [ ! -s /tmp/go ]; do sleep 0.1; done; read word < /tmp/go; "
    'if [ "$word" = oom ]; then exec tail /dev/zero; fi; exit "$word"'
)
Trigger = Callable[[Cluster, str, str], Awaitable[None]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the agent side is asyncio-only


async def write_word(cluster: Cluster, sandbox_id: str, word: str) -> None:
    request = WriteFile(sandbox_id=sandbox_id, path="/tmp/go", data=word.encode())
    await cluster.call(sandbox_id, request, Done)


@asynccontextmanager
async def docker_cluster(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Cluster, Trigger]]:
    monkeypatch.setattr(_docker_json, "KEEPALIVE", ["sh", "-c", SCRIPT])
    async with (
        open_docker(None) as client,
        open_agent(DockerRuntime(client, f"ends-{secrets.token_hex(4)}")) as server,
        open_cluster([AgentConnector(server)]) as cluster,
    ):
        yield cluster, write_word


@asynccontextmanager
async def fake_cluster(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Cluster, Trigger]]:
    async with (
        FakeRuntime(images=[SH_IMAGE]) as runtime,
        open_agent(runtime) as server,
        open_cluster([AgentConnector(server)]) as cluster,
    ):

        async def crash(cluster: Cluster, sandbox_id: str, word: str) -> None:
            oom = word == "oom"
            await runtime.crash(sandbox_id, 137 if oom else int(word), oom=oom)

        yield cluster, crash


RUNTIMES = {
    "fake": fake_cluster,
    "docker": pytest.param(docker_cluster, marks=[pytest.mark.docker, pytest.mark.slow]),
}


async def ended(events: Subscription, sandbox_id: str) -> LifecycleEvent:
    with anyio.fail_after(60):
        async for event in events:
            if event.sandbox_id == sandbox_id and event.state is S.STOPPED:
                return event
    raise AssertionError("the cluster closed first")


@pytest.mark.parametrize("opened", list(RUNTIMES.values()), ids=list(RUNTIMES))
@pytest.mark.parametrize(("word", "end", "code"), [("3", "init_exited", 3), ("oom", "oom", 137)])
async def test_an_init_that_ends_on_its_own_is_reported_with_its_reason(
    opened: Callable[[pytest.MonkeyPatch], Awaitable[None]],
    word: str,
    end: str,
    code: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = SandboxSpec(image=SH_IMAGE, memory=16 << 20, cpus=0.5)
    async with opened(monkeypatch) as (cluster, trigger):  # type: ignore[attr-defined]
        events = cluster.events()
        record = await cluster.create_sandbox(spec)
        await trigger(cluster, record.sandbox_id, word)
        seen = await ended(events, record.sandbox_id)
        assert (seen.end, seen.exit_code) == (EndReason(end), code), seen
        assert record.end is not None and record.end.end is EndReason(end)
        assert record.end.exit_code == code
        await cluster.delete_sandbox(record.sandbox_id)


@pytest.mark.docker
@pytest.mark.slow
async def test_deadlines_and_a_stop_end_with_their_reasons_in_order(docker_engine: None) -> None:
    base = SandboxSpec(image=SH_IMAGE, memory=32 << 20, cpus=0.5)
    async with open_cluster(["local"]) as cluster:
        events = cluster.events()
        idle = await cluster.create_sandbox(base.__replace__(idle_timeout=1.0))
        life = await cluster.create_sandbox(base.__replace__(lifetime=2.0))
        asked = await cluster.create_sandbox(base)
        await cluster.stop_sandbox(asked.sandbox_id)
        steps: dict[str, list[tuple[SandboxState, EndReason | None]]] = {}
        with anyio.fail_after(60):
            async for event in events:
                steps.setdefault(event.sandbox_id, []).append((event.state, event.end))
                if sum(state is S.STOPPED for s in steps.values() for state, _ in s) == 3:
                    break
        way = [S.CREATING, S.RUNNING, S.STOPPING, S.STOPPED]
        for record, end in (
            (idle, EndReason.IDLE),
            (life, EndReason.LIFETIME),
            (asked, EndReason.USER),
        ):
            assert steps[record.sandbox_id] == [(s, None) for s in way[:-1]] + [(S.STOPPED, end)]
            assert record.end is not None and record.end.end == end


async def test_the_sdk_status_and_events_say_why() -> None:
    async with (
        FakeRuntime(images=[SH_IMAGE]) as runtime,
        open_agent(runtime) as server,
        open_sdk_cluster([AgentConnector(server)]) as cluster,
    ):
        events = cluster.events(buffer=10)
        sb = await cluster.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"))
        assert (await sb.status()).end is None
        await runtime.crash(sb.sandbox_id, oom=True)
        with anyio.fail_after(60):
            async for event in events:
                if event.end is not None:
                    break
        assert (event.sandbox_id, event.end, event.exit_code) == (sb.sandbox_id, EndReason.OOM, 137)
        status = await sb.status()
        assert status.end is not None and (status.end.end, status.end.exit_code) == (
            EndReason.OOM,
            137,
        )
        assert status.history[-1] == status.end
        with pytest.raises(BadRequest, match=r"^an event buffer holds at least 1 event, not -1$"):
            cluster.events(buffer=-1)
