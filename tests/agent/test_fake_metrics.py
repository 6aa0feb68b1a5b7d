"""The agent's metrics on `FakeRuntime`: `ReadMetrics` answers the exposition, and creates,
commands, timeouts and engine calls move it; each agent keeps its own registry."""

from __future__ import annotations

import urllib.request

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rock_agent._engine_timing import observing_engine, timed
from rock_agent._metrics import AgentMetrics, operation
from rock_agent._metrics_serve import open_metrics_port
from rock_core import BadRequest, EngineUnavailable
from rock_core._protocol import (
    CommandReply,
    CreateSandbox,
    CreateSession,
    Done,
    ExecReply,
    Execute,
    MetricsReply,
    ReadMetrics,
    RunCommand,
    SandboxReply,
    StopSandbox,
)
from rock_core.defaults import POOL_LABEL

from .test_fake_coverage import Fake, anyio_backend, covers, open_fake, spec

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio

BOX = "metered"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def scrape(fake: Fake) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    conn = fake.conn
    reply = await conn.call(ReadMetrics(id=conn.next_id()), MetricsReply)
    return samples(reply.text)


@covers(ReadMetrics, CreateSandbox, RunCommand, Execute)
async def test_creates_commands_and_timeouts_move_the_metrics() -> None:
    async with open_fake() as fake:
        before = await scrape(fake)
        assert before[("rock_sandboxes", (("state", "running"),))] == 0
        assert before[("rock_command_timeouts_total", (("kind", "session"),))] == 0
        conn = fake.conn
        await conn.call(CreateSandbox(id=conn.next_id(), sandbox_id=BOX, spec=spec()), SandboxReply)
        pooled = spec(labels={POOL_LABEL: "p1"})
        await conn.call(
            CreateSandbox(id=conn.next_id(), sandbox_id="m2", spec=pooled), SandboxReply
        )
        await conn.call(CreateSession(id=conn.next_id(), sandbox_id=BOX, session="s"), Done)
        ran = await conn.call(
            RunCommand(id=conn.next_id(), sandbox_id=BOX, session="s", command="true"),
            CommandReply,
        )
        slow = RunCommand(
            id=conn.next_id(), sandbox_id=BOX, session="s", command="sleep 5", timeout=0.2
        )
        assert (await conn.call(slow, CommandReply)).result.timed_out
        await conn.call(Execute(id=conn.next_id(), sandbox_id=BOX, argv=["true"]), ExecReply)

        after = await scrape(fake)
        assert after[("rock_sandboxes", (("state", "running"),))] == 2
        cold = (("launch_type", "cold"), ("warmpool_name", ""))
        pool = (("launch_type", "cold"), ("warmpool_name", "p1"))
        assert after[("rock_sandbox_creation_latency_seconds_count", cold)] == 1
        assert after[("rock_sandbox_creation_latency_seconds_count", pool)] == 1
        session, one_off = (("kind", "session"),), (("kind", "exec"),)
        assert after[("rock_command_duration_seconds_count", session)] == 2
        assert after[("rock_command_duration_seconds_sum", session)] >= ran.result.duration
        assert after[("rock_command_duration_seconds_count", one_off)] == 1
        assert after[("rock_command_timeouts_total", session)] == 1
        assert after[("rock_command_timeouts_total", one_off)] == 0
        assert after[("rock_command_oom_kills_total", session)] == 0
        assert ("rock_event_loop_lag_seconds_count", ()) in after


async def test_agents_in_one_process_keep_their_own_numbers() -> None:
    async with open_fake() as first, open_fake() as second:
        conn = first.conn
        await conn.call(CreateSandbox(id=conn.next_id(), sandbox_id=BOX, spec=spec()), SandboxReply)
        key = (
            "rock_sandbox_creation_latency_seconds_count",
            (("launch_type", "cold"), ("warmpool_name", "")),
        )
        assert (await scrape(first))[key] == 1
        assert key not in await scrape(second)  # no create there: no series yet


async def test_engine_calls_are_timed_by_operation_without_ids() -> None:
    metrics = AgentMetrics()
    with timed("starting sandbox sb-1"):  # no observer: nothing to count
        pass
    async with observing_engine(metrics.engine_call):
        for what in ("starting sandbox sb-1", "starting sandbox sb-2", "listing sandboxes"):
            with timed(what):
                pass
        with pytest.raises(ValueError, match="boom"), timed("image python:3.11"):
            raise ValueError("boom")  # a failed call is timed too
    found = samples(metrics.render())
    count = "rock_engine_call_duration_seconds_count"
    assert found[(count, (("operation", "starting sandbox"),))] == 2
    assert found[(count, (("operation", "listing sandboxes"),))] == 1
    assert found[(count, (("operation", "image"),))] == 1
    assert operation("inspecting a process in sandbox sb-9") == "inspecting a process in sandbox"
    assert operation("reading engine info") == "reading engine info"


async def test_the_http_port_answers_on_loopback_only() -> None:
    async with open_fake() as fake:
        conn = fake.conn
        await conn.call(CreateSandbox(id=conn.next_id(), sandbox_id=BOX, spec=spec()), SandboxReply)
        async with open_metrics_port(fake.server, 0) as port:
            assert port
            url = f"http://127.0.0.1:{port}/metrics"
            text = await anyio.to_thread.run_sync(
                lambda: urllib.request.urlopen(url, timeout=10).read().decode()
            )
            assert fake.server.metrics.registry is not None
            found = samples(text)
            assert found[("rock_sandboxes", (("state", "running"),))] == 1
            with pytest.raises(BadRequest, match=f"cannot serve metrics on 127.0.0.1:{port}: "):
                async with open_metrics_port(fake.server, port):
                    pass


@covers(ReadMetrics)
async def test_a_sandbox_the_kernel_killed_for_memory_is_counted_once_stopped() -> None:
    async with open_fake() as fake:
        conn = fake.conn
        for box in ("oom-1", "crash-1"):
            await conn.call(
                CreateSandbox(id=conn.next_id(), sandbox_id=box, spec=spec()), SandboxReply
            )
        assert (await scrape(fake))[("rock_sandboxes_oom_killed", ())] == 0
        await fake.runtime.crash("oom-1", oom=True)
        await fake.runtime.crash("crash-1")  # killed, but not for memory
        found = await scrape(fake)
        assert found[("rock_sandboxes_oom_killed", ())] == 1
        assert found[("rock_sandboxes", (("state", "exited"),))] == 2


async def test_a_stopped_sandbox_the_engine_cannot_inspect_does_not_fail_a_scrape() -> None:
    async with open_fake() as fake:
        conn = fake.conn
        await conn.call(CreateSandbox(id=conn.next_id(), sandbox_id=BOX, spec=spec()), SandboxReply)
        stop = StopSandbox(id=conn.next_id(), sandbox_id=BOX, timeout=1)
        await conn.call(stop, SandboxReply)

        async def refused(sandbox_id: str) -> None:
            raise EngineUnavailable(f"the engine did not answer about {sandbox_id}")

        fake.runtime.container = refused  # type: ignore[assignment,method-assign]
        found = await scrape(fake)
        assert found[("rock_sandboxes", (("state", "exited"),))] == 1
