"""Metrics scraped for real: an agent on Docker counts a cold create, a pooled one, commands,
a timeout and an OOM kill; the core's collector counts the pool's warm hand-out; `rock
metrics` prints them; the agents' metrics come over SSH too."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import rock_core
from rock_sdk import SandboxConfig, open_cluster
from rock_sdk.metrics import ClusterCollector, read_metrics

from ..conftest import PY_IMAGE, SH_IMAGE
from .test_cli import cli
from .test_ssh import OPTIONS

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition by (name, sorted labels)."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def kind(value: str) -> tuple[tuple[str, str], ...]:
    return (("kind", value),)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.slow
async def test_real_creates_commands_timeouts_and_ooms_move_the_metrics(
    docker_engine: None,
) -> None:
    async with open_cluster(["local"]) as cluster:
        (host_id,) = cluster.hosts
        before = samples((await read_metrics(cluster))[host_id])
        cold = await cluster.create_sandbox(SandboxConfig(image=PY_IMAGE, memory="64m"))
        assert (await cold.arun("echo hi")).exit_code == 0
        assert (await cold.arun("sleep 30", timeout=0.5)).timed_out
        hog = await cold.execute(["python3", "-c", "x = bytearray(512 << 20)"])
        assert (hog.exit_code, hog.oom_killed) == (137, True)
        await cold.stop()  # the engine says OOMKilled for it now
        async with cluster.open_pool(
            SandboxConfig(image=SH_IMAGE, memory="64m"), min_size=1, name="metrics-it"
        ) as pool:
            await pool.wait_ready()
            warm = await pool.acquire()
            assert (await warm.arun("true")).exit_code == 0

            registry = CollectorRegistry()  # the embedding program's own registry
            registry.register(ClusterCollector(cluster))
            core = samples(generate_latest(registry).decode())
            after = samples((await read_metrics(cluster))[host_id])

        pool_label = (("warmpool_name", "metrics-it"),)
        assert core[("rock_pool_hits_total", pool_label)] == 1
        assert core[("rock_pool_misses_total", pool_label)] == 0
        assert core[("rock_pool_handed_out", pool_label)] == 1
        latency = "rock_cluster_creation_latency_seconds_count"
        assert core[(latency, (("launch_type", "warm"),))] == 1
        assert core[(latency, (("launch_type", "cold"),))] == 1  # the direct create only
        assert core[("rock_cluster_queue_depth", ())] == 0
        assert core[("rock_cluster_placements_total", ())] >= 2

        def moved(name: str, labels: tuple[tuple[str, str], ...]) -> float:
            return after[(name, labels)] - before.get((name, labels), 0.0)

        created = "rock_sandbox_creation_latency_seconds_count"
        assert moved(created, (("launch_type", "cold"), ("warmpool_name", ""))) >= 1
        assert moved(created, (("launch_type", "cold"), ("warmpool_name", "metrics-it"))) >= 1
        assert moved("rock_command_duration_seconds_count", kind("session")) == 3
        assert moved("rock_command_duration_seconds_count", kind("exec")) == 1
        assert moved("rock_command_timeouts_total", kind("session")) == 1
        assert moved("rock_command_oom_kills_total", kind("exec")) == 1
        assert moved("rock_command_oom_kills_total", kind("session")) == 0
        assert after[("rock_sandboxes", (("state", "running"),))] >= 1
        assert after[("rock_sandboxes", (("state", "exited"),))] >= 1
        assert after[("rock_sandboxes_oom_killed", ())] >= 1
        starting = "rock_engine_call_duration_seconds_count", (("operation", "starting sandbox"),)
        assert moved(*starting) >= 2
        assert after[("rock_event_loop_lag_seconds_count", ())] >= 1


def test_rock_metrics_prints_the_agents_exposition(docker_engine: None) -> None:
    code, out, err = cli("metrics")
    assert (code, err) == (0, b"")
    text = out.decode()
    assert text.startswith("# host: ")
    found = samples(text.split("\n", 1)[1])
    assert ("rock_sandboxes", (("state", "running"),)) in found
    listing = ("rock_engine_call_duration_seconds_count", (("operation", "listing sandboxes"),))
    assert found[listing] >= 1


def test_rock_metrics_json_is_one_sample_per_line(docker_engine: None) -> None:
    code, out, err = cli("metrics", "--json")
    assert (code, err) == (0, b"")
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert {tuple(sorted(row)) for row in rows} == {("host", "labels", "name", "value")}
    running = [
        r for r in rows if r["name"] == "rock_sandboxes" and r["labels"]["state"] == "running"
    ]
    assert len(running) == 1 and running[0]["value"] >= 0


def test_rock_metrics_of_a_host_it_cannot_reach_exits_125() -> None:
    code, out, err = cli("--hosts", "bogus://x", "metrics")
    assert (code, out) == (125, b"")
    assert err.decode() == (
        "rock metrics: cannot reach host 'bogus://x': use 'local', "
        "'unix:///path/to/agent.sock' or 'ssh://[user@]host[:port]'\n"
    )


def test_rock_metrics_of_a_host_not_in_the_cluster_exits_125() -> None:
    code, out, err = cli("metrics", "--host", "elsewhere")
    assert (code, out) == (125, b"")
    assert re.fullmatch(r"rock metrics: no host 'elsewhere' \(hosts: [^)]+\)\n", err.decode())


async def test_an_unknown_host_id_is_not_found(docker_engine: None) -> None:
    async with open_cluster(["local"]) as cluster:
        with pytest.raises(rock_core.NotFound, match=r"^no host 'elsewhere' \(hosts: "):
            await read_metrics(cluster, ["elsewhere"])


def _worktree_agent() -> str:
    """The SSH agent command running this checkout's code (as the local agent does)."""
    src = Path(rock_core.__file__).parents[1]
    command = ["env", f"PYTHONPATH={src}", sys.executable, "-m", "rock_agent"]
    return quote(shlex.join(command), safe="")


async def test_metrics_come_over_ssh(docker_engine: None, tmp_path: Path) -> None:
    socket = tmp_path / "agent.sock"  # a socket agent of this test's (it exits when idle)
    address = f"ssh://root@127.0.0.1:2222?socket={socket}&agent={_worktree_agent()}"
    async with open_cluster([address], ssh=OPTIONS) as cluster:
        sb = await cluster.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"))
        await sb.arun("true")
        (text,) = (await read_metrics(cluster)).values()
    found = samples(text)
    assert found[("rock_command_duration_seconds_count", kind("session"))] == 1
    assert (
        found[
            (
                "rock_sandbox_creation_latency_seconds_count",
                (("launch_type", "cold"), ("warmpool_name", "")),
            )
        ]
        == 1
    )
