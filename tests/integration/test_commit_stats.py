"""Commit a sandbox to an image and start from it; live resource use, against real Docker."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator

import anyio
import pytest

from rock_agent._docker_json import (
    commit_config,
    container_summary,
    engine_time,
    stats_reading,
)
from rock_agent._images import split_reference
from rock_agent._stats import sandbox_stats
from rock_core import BadRequest, Cluster, SandboxNotFound
from rock_core._protocol import CommitSandbox, ImageReply, ReadStats, StatsReply
from rock_sdk import Sandbox, SandboxConfig

from ..conftest import PY_IMAGE, SH_IMAGE

pytestmark = pytest.mark.anyio

MIB = 1 << 20


@pytest.fixture
async def image_name() -> AsyncIterator[str]:
    """A unique image name; the image is removed after the test, if it was made."""
    name = f"rock-commit-{secrets.token_hex(4)}/saved:1"
    yield name
    await anyio.run_process(["docker", "rmi", "-f", name], check=False)


async def image_config(name: str) -> dict:  # type: ignore[type-arg]
    out = await anyio.run_process(["docker", "image", "inspect", name])
    return json.loads(out.stdout)[0]  # type: ignore[no-any-return]


async def test_commit_then_start_a_new_sandbox_from_the_image(
    cluster: Cluster, image_name: str
) -> None:
    async with Sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"), cluster=cluster) as first:
        await first.write_file("/data/hello.txt", b"kept in the image\n")
        info = await first.commit(
            image_name, message="saved by a test", changes=["ENV FROM_COMMIT=yes", "WORKDIR /data"]
        )
    assert info.tags == [image_name]
    assert info.image_id.startswith("sha256:")
    assert info.size > info.shared_size > 0  # the busybox layers, plus the new one
    assert info.last_used >= info.created > 0

    raw = await image_config(image_name)
    assert raw["Comment"] == "saved by a test"
    assert not raw["Config"].get("Entrypoint")  # the sandbox's keep-alive is not kept
    rock_labels = {
        k: v for k, v in (raw["Config"]["Labels"] or {}).items() if k.startswith("rock.")
    }
    assert rock_labels and set(rock_labels.values()) == {""}  # never taken for a sandbox

    config = SandboxConfig(image=image_name, memory="64m", pull="never")
    async with Sandbox(config, cluster=cluster) as second:
        assert await second.read_file("/data/hello.txt") == b"kept in the image\n"
        result = await second.execute(["sh", "-c", 'echo "$FROM_COMMIT in $(pwd)"'], check=True)
        assert result.stdout == "yes in /data\n"
        status = await second.status()
        assert status.info is not None
        assert status.info.labels["rock.sandbox"] == second.sandbox_id
        assert status.info.labels["rock.managed"] == "1"


async def test_commit_errors(cluster: Cluster, py_sandbox: Sandbox) -> None:
    with pytest.raises(BadRequest, match=r"^commit to a name:tag, not a digest: 'a@sha256:00'$"):
        await py_sandbox.commit("a@sha256:00")
    with pytest.raises(
        BadRequest,
        match=r"^invalid 'commit' request: image ' ': must be an image reference \(1 to 512 char",
    ):
        await py_sandbox.commit(" ")
    with pytest.raises(
        BadRequest,
        match=r"^invalid 'commit' request: image 'Not A Valid/Name:1': must be an image reference",
    ):
        await py_sandbox.commit("Not A Valid/Name:1")
    with pytest.raises(BadRequest, match=r"^changes takes a list of Dockerfile instructions"):
        await py_sandbox.commit("x/y:1", changes="ENV A=1")
    conn = cluster.connection(py_sandbox.sandbox_id)
    with pytest.raises(SandboxNotFound, match=r"sb-no-such-sandbox"):
        await conn.call(
            CommitSandbox(id=conn.next_id(), sandbox_id="sb-no-such-sandbox", image="x/y:1"),
            ImageReply,
        )
    with pytest.raises(BadRequest, match=r"^the sandbox has not been started$"):
        await Sandbox(SandboxConfig(image=SH_IMAGE), cluster=cluster).commit("x/y:1")


async def test_stats_show_a_busy_process_and_sane_memory_and_pids(cluster: Cluster) -> None:
    config = SandboxConfig(image=PY_IMAGE, memory="512m", cpus=1, pids=256)
    async with Sandbox(config, cluster=cluster) as sb:
        idle = await sb.stats()
        await sb.arun(
            "(python3 -c 'b = bytearray(96 << 20); import time; time.sleep(600)' &); "
            "(sh -c 'while :; do :; done' &); sleep 1",
            check=True,
        )
        busy = await sb.stats()
        later = await sb.stats()
        await sb.arun("pkill -f 'while :' ; true")

    assert idle.sandbox_id == busy.sandbox_id == sb.sandbox_id
    assert idle.cpu_percent < 20
    assert busy.cpu_percent > 30  # one spinning loop, capped at one cpu
    assert busy.cpu_percent <= 100 * busy.online_cpus
    assert later.cpu_seconds - busy.cpu_seconds >= 0.3
    assert 0.5 < busy.interval < 5
    assert busy.time > idle.time
    assert busy.memory_limit == 512 * MIB
    assert 96 * MIB <= busy.memory <= busy.memory_limit
    assert busy.memory_peak >= busy.memory
    assert busy.pids_limit == 256
    assert 4 <= busy.pids <= 20  # init, the keep-alive, the loop, python, ...
    assert idle.pids < busy.pids


async def test_stats_of_a_stopped_or_unknown_sandbox(cluster: Cluster) -> None:
    sb = Sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"), cluster=cluster)
    await sb.start()
    try:
        await sb.stop()
        with pytest.raises(
            BadRequest,
            match=rf"^sandbox {sb.sandbox_id} is not running \(exited\); only a running sandbox",
        ):
            await sb.stats()
        conn = cluster.connection(sb.sandbox_id)
        with pytest.raises(SandboxNotFound, match=r"sb-no-such-sandbox"):
            await conn.call(
                ReadStats(id=conn.next_id(), sandbox_id="sb-no-such-sandbox"), StatsReply
            )
    finally:
        await sb.delete()


# ---------------------------------------------------------------------------- sans-IO parts

READING_V1 = {
    "read": "2026-11-22T06:11:58.916578461Z",
    "preread": "2026-11-22T06:11:57.912367964Z",
    "pids_stats": {"current": 2, "limit": 100},
    "cpu_stats": {
        "cpu_usage": {"total_usage": 2038236970, "percpu_usage": [171978426, 1866258544]},
        "system_cpu_usage": 17697620000000,
        "online_cpus": 2,
    },
    "precpu_stats": {
        "cpu_usage": {"total_usage": 1048119066},
        "system_cpu_usage": 17695680000000,
        "online_cpus": 2,
    },
    "memory_stats": {
        "usage": 987136,
        "max_usage": 4096000,
        "stats": {"total_inactive_file": 315392, "inactive_file": 1},
        "limit": 268435456,
    },
}


def test_stats_reading_of_cgroup_v1() -> None:
    stats = sandbox_stats("sb", stats_reading(READING_V1), now=5.0)
    assert stats.cpu_percent == pytest.approx(102.074, abs=0.001)  # one cpu, fully busy
    assert stats.cpu_seconds == pytest.approx(2.038236970)
    assert stats.interval == pytest.approx(1.004210497, abs=1e-6)
    assert stats.time == pytest.approx(engine_time(READING_V1["read"]))
    assert (stats.memory, stats.memory_limit, stats.memory_peak) == (
        987136 - 315392,
        268435456,
        4096000,
    )
    assert (stats.pids, stats.pids_limit, stats.online_cpus) == (2, 100, 2)


def test_stats_reading_of_cgroup_v2_and_of_a_first_sample() -> None:
    reading = {
        "read": "2026-11-22T06:11:58Z",
        "preread": "0001-01-01T00:00:00Z",
        "cpu_stats": {"cpu_usage": {"total_usage": 5_000_000_000}, "system_cpu_usage": 10},
        "precpu_stats": {"cpu_usage": {}},
        "memory_stats": {"usage": 100, "stats": {"inactive_file": 40}, "limit": 1000},
    }
    stats = sandbox_stats("sb", stats_reading(reading), now=5.0)
    assert (stats.cpu_percent, stats.interval, stats.cpu_seconds) == (0.0, 0.0, 5.0)
    assert (stats.memory, stats.pids, stats.online_cpus) == (60, 0, 1)
    assert sandbox_stats("sb", stats_reading({}), now=7.0).time == 7.0
    assert engine_time("garbage") == engine_time(None) == 0.0


def test_commit_config_restores_the_source_and_blanks_rock_labels() -> None:
    container = {
        "Config": {
            "Labels": {"rock.managed": "1", "rock.owner": "me", "team": "rl"},
            "Entrypoint": ["sleep", "2147483647"],
        }
    }
    source = {"Entrypoint": None, "Cmd": ["python3"], "Env": ["A=1"], "Labels": {"src": "x"}}
    config = commit_config(container, source)
    assert config["Labels"] == {"src": "x", "rock.managed": "", "rock.owner": ""}
    assert config["Entrypoint"] == []  # empty, not null: the keep-alive is not taken over
    assert (config["Cmd"], config["Env"]) == (["python3"], ["A=1"])


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("me/saved:1", ("me/saved", "1")),
        ("saved", ("saved", "latest")),
        ("localhost:5000/team/app:v1.2", ("localhost:5000/team/app", "v1.2")),
        ("reg.example.com/a__b-c.d/e", ("reg.example.com/a__b-c.d/e", "latest")),
    ],
)
def test_commit_names(image: str, expected: tuple[str, str]) -> None:
    assert split_reference(image) == expected


@pytest.mark.parametrize("image", ["UPPER:1", "a:b:c", "x/y:", ":1", "a//b", "-a:1"])
def test_bad_commit_names(image: str) -> None:
    with pytest.raises(BadRequest, match=rf"^'{re.escape(image)}' is not a valid image name: "):
        split_reference(image)


def test_a_paused_container_is_a_running_one_for_image_use() -> None:
    # As the fake runtime's: a paused sandbox still runs (its image is in use now).
    summary = container_summary({"ImageID": "sha256:1", "State": "paused", "Created": 5})
    assert summary.running
