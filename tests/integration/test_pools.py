"""Warm pools and bulk create against real Docker: hand-outs, fallback, reset, close, CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import anyio
import pytest

from rock_core import CapacityError, Cluster, ImageNotFound, SandboxState, TimedOut
from rock_core._pool import POOL_LABEL
from rock_sdk import (
    CreateProgress,
    Pool,
    Sandbox,
    SandboxCluster,
    SandboxConfig,
    open_cluster,
)
from rock_sdk._pool import open_pool

from ..conftest import PY_IMAGE, SH_IMAGE

pytestmark = pytest.mark.anyio

SMALL = SandboxConfig(image=SH_IMAGE, cpus=0.1, memory="64m")
PY = SandboxConfig(image=PY_IMAGE, cpus=0.2, memory="256m")


@pytest.fixture(scope="module")
def sdk(cluster: Cluster) -> SandboxCluster:
    return SandboxCluster(cluster)


def containers(label: str) -> list[dict[str, str]]:
    """id, state and labels of every container (running or not) carrying `label`."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label={label}", "--format", "{{json .}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def pool_containers(name: str) -> set[str]:
    """Sandbox ids of the containers labelled as members of pool `name`."""
    found = set()
    for row in containers(f"{POOL_LABEL}={name}"):
        labels = dict(pair.split("=", 1) for pair in row["Labels"].split(",") if "=" in pair)
        found.add(labels["rock.sandbox"])
    return found


async def rock(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process([sys.executable, "-m", "rock_sdk._cli", *args], check=False)


async def test_a_pool_hands_out_ready_sandboxes_with_an_open_shell(sdk: SandboxCluster) -> None:
    async with sdk.open_pool(PY, min_size=2, name="it-ready") as pool:
        await pool.wait_ready()
        assert pool_containers("it-ready") == set(pool.core._stock.policy.ready_ids())
        async with pool.sandbox() as sb:
            assert sb.state is SandboxState.RUNNING
            assert "default" in (await sb.status()).sessions  # opened before the hand-out
            r = await sb.arun("cd /tmp && python3 -c 'print(6*7)'")
            assert (r.output, r.exit_code) == ("42\n", 0)
            assert (await sb.arun("pwd")).output == "/tmp\n"  # the session keeps state
            held = sb.sandbox_id
        assert held not in pool_containers("it-ready")  # released: deleted
        stats = pool.statistics()
        assert (stats.hits, stats.misses, stats.handed_out) == (1, 0, 0)
        await pool.wait_ready()
    assert pool_containers("it-ready") == set()


async def test_concurrent_acquires_get_distinct_containers_and_an_empty_pool_falls_back(
    sdk: SandboxCluster,
) -> None:
    async with sdk.open_pool(SMALL, min_size=2, max_size=4, name="it-busy") as pool:
        await pool.wait_ready()
        got: list[Sandbox] = []

        async def take() -> None:
            got.append(await pool.acquire())

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(take)
        ids = [sb.sandbox_id for sb in got]
        assert len(set(ids)) == 6
        hostnames = {(await sb.arun("hostname")).output for sb in got}
        assert len(hostnames) == 6  # six different containers
        stats = pool.statistics()
        assert stats.hits >= 2 and stats.misses >= 1 and stats.hits + stats.misses == 6
        assert stats.target == 4  # misses raised it, up to max_size
        await pool.wait_ready(4)
        assert pool.statistics().size == 4
        ready = pool_containers("it-busy") - set(ids)
        assert len(ready) == 4
        async with anyio.create_task_group() as tg:
            for sb in got:
                tg.start_soon(pool.release, sb)
        assert pool_containers("it-busy") == ready
    assert pool_containers("it-busy") == set()


async def test_release_with_reset_restarts_and_hands_the_container_out_again(
    sdk: SandboxCluster,
) -> None:
    async with sdk.open_pool(SMALL, min_size=1, max_size=2, name="it-reset") as pool:
        await pool.wait_ready()
        sb = await pool.acquire()
        await pool.wait_ready()
        await sb.write_file("/tmp/kept.txt", "files survive a reset")
        await sb.arun("cd /tmp && export MARK=1 && (sleep 600 >/dev/null 2>&1 &)")
        count = "ps | grep -c 'sleep 60[0]' || true"  # the brackets keep grep from counting itself
        assert (await sb.arun(count)).output == "1\n"
        await pool.release(sb, reset=True)
        assert pool.statistics().resets == 1
        first, again = await pool.acquire(), await pool.acquire()
        assert again.sandbox_id == sb.sandbox_id  # the older ready member went first
        assert await again.read_text("/tmp/kept.txt") == "files survive a reset"
        r = await again.arun(f"pwd; echo ${{MARK:-unset}}; {count}")
        assert r.output.split() == ["/", "unset", "0"]  # a new shell; old processes gone
        for member in (first, again):
            await pool.release(member)
    assert pool_containers("it-reset") == set()


async def test_closing_deletes_idle_members_and_keeps_the_held_one(sdk: SandboxCluster) -> None:
    async with sdk.open_pool(SMALL, min_size=2, name="it-close") as pool:
        await pool.wait_ready()
        held = await pool.acquire()
        await pool.wait_ready()
        assert len(pool_containers("it-close")) == 3
    assert pool_containers("it-close") == {held.sandbox_id}
    assert (await held.arun("echo still mine")).output == "still mine\n"
    await pool.release(held, reset=True)  # the pool is closed: deleted
    assert pool_containers("it-close") == set()
    assert sdk.statistics().pools == ()


async def test_a_hanging_prepare_times_out_and_leaves_no_container(sdk: SandboxCluster) -> None:
    async def prepare(sb: Sandbox) -> None:
        await sb.arun("sleep 600")  # a prepare stuck in the sandbox

    timed_out = r"prepare of sandbox sb-[0-9a-f]+ in pool 'it-stuck' did not finish within 1 s"
    began = time.monotonic()
    async with open_pool(
        sdk.core, SMALL, min_size=1, name="it-stuck", prepare=prepare, prepare_timeout=1.0
    ) as pool:
        with pytest.raises(TimedOut, match=f"^pool 'it-stuck' could not refill: {timed_out}$"):
            await pool.wait_ready()
        with pytest.raises(TimedOut, match=f"^{timed_out}$"):
            await pool.acquire()  # a miss: its prepare times out too, and it is deleted
        assert pool.statistics().handed_out == 0
    assert time.monotonic() - began < 30
    assert pool_containers("it-stuck") == set()


async def test_statistics_and_the_cli_see_the_pool(sdk: SandboxCluster) -> None:
    async with sdk.open_pool(SMALL, min_size=2, name="it-cli") as pool:
        await pool.wait_ready()
        stats = sdk.statistics()
        assert stats.pool("it-cli").ready == 2 and stats.pool("it-cli").refill_rate > 0
        assert stats.hosts and stats.queue_depth == 0
        members = pool_containers("it-cli")

        listed = await rock("pool", "ls", "it-cli")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.decode().splitlines()
        header = ["POOL", "SANDBOX", "IMAGE", "STATE", "AGE", "OWNER", "HOST", "SIZE"]
        assert lines[0].split() == header
        rows = [line.split() for line in lines[1:]]
        assert {row[1] for row in rows} == members
        assert all(row[0] == "it-cli" and row[3] == "running" for row in rows)
        assert all(row[5] == sdk.owner for row in rows)
        quiet = await rock("pool", "ls", "-q")
        assert members <= set(quiet.stdout.decode().split())

        removed = await rock("pool", "rm", "it-cli")
        assert removed.returncode == 0, removed.stderr
        assert set(removed.stdout.decode().split()) == members
        assert pool_containers("it-cli").isdisjoint(members)
        # The core hears of the removals: the pool drops those members and refills.
        with anyio.fail_after(30):
            while True:
                if pool.statistics().discarded == 2:
                    break
                await anyio.sleep(0.05)
            await pool.wait_ready()
        assert len(pool_containers("it-cli")) == 2
    assert pool_containers("it-cli") == set()
    again = await rock("pool", "rm", "it-cli")
    assert again.returncode == 125
    assert again.stderr.decode() == "rock pool rm: no members of pool 'it-cli' here\n"


async def test_create_many_starts_what_it_can_and_reports_each_failure(
    sdk: SandboxCluster,
) -> None:
    missing = SandboxConfig(image="rock-test/no-such-image:1", pull="never", memory="64m")
    configs = [SMALL, SMALL, missing, SMALL, missing, SMALL]
    seen: list[CreateProgress] = []
    result = await sdk.create_many(configs, concurrency=3, on_progress=seen.append)
    try:
        assert not result.ok
        assert len(result.sandboxes) == 4
        assert all(sb.state is SandboxState.RUNNING for sb in result.sandboxes)
        assert [f.index for f in result.failures] == [2, 4]
        for failure in result.failures:
            assert isinstance(failure.error, ImageNotFound)
            assert str(failure.error).startswith(
                "image 'rock-test/no-such-image:1' is not on this host"
            )
            assert str(failure).startswith(f"#{failure.index} ({failure.sandbox_id}): ")
        assert [p.done for p in seen] == [1, 2, 3, 4, 5, 6]
        assert (seen[-1].started, seen[-1].failed, seen[-1].total) == (4, 2, 6)
        with pytest.raises(ImageNotFound) as info:
            result.raise_on_failure()
        assert info.value.__notes__[0] == "2 of 6 sandboxes failed to start:"
        outputs = [(await sb.arun("echo ok")).output for sb in result.sandboxes]
        assert outputs == ["ok\n"] * 4
    finally:
        for sb in result.sandboxes:
            await sb.delete()


async def test_create_many_with_check_is_all_or_nothing(sdk: SandboxCluster) -> None:
    missing = SandboxConfig(image="rock-test/no-such-image:1", pull="never", memory="64m")
    before = {r.sandbox_id for r in sdk.core.records() if r.state is SandboxState.RUNNING}
    with pytest.raises(ImageNotFound) as info:
        await sdk.create_many([SMALL, missing, SMALL], check=True)
    assert info.value.__notes__[0] == "1 of 3 sandboxes failed to start:"
    after = {r.sandbox_id for r in sdk.core.records() if r.state is SandboxState.RUNNING}
    assert after == before  # the two that started were deleted


async def test_create_many_is_idempotent_with_ids_and_shows_progress(
    sdk: SandboxCluster, capfd: pytest.CaptureFixture[str]
) -> None:
    ids = ["sb-bulk-a", "sb-bulk-b", "sb-bulk-c"]
    first = await sdk.create_many(SMALL, 3, sandbox_ids=ids, progress=True)
    try:
        again = await sdk.create_many(SMALL, 3, sandbox_ids=ids)
        assert [sb.sandbox_id for sb in first.sandboxes] == ids
        assert [sb.sandbox_id for sb in again.sandboxes] == ids
        assert len(containers("rock.sandbox=sb-bulk-b")) == 1  # not a second container
        err = capfd.readouterr().err
        assert "create_many: 3/3 sandboxes started" in err
    finally:
        for sb in first.sandboxes:
            await sb.delete()


async def test_a_pool_under_the_sdk_cluster_and_its_prepare_hook() -> None:
    prepared: list[str] = []

    async def prepare(sb: Sandbox) -> None:
        await sb.write_file("/tmp/prepared", sb.sandbox_id)
        prepared.append(sb.sandbox_id)

    async with open_cluster() as cluster:
        async with cluster.open_pool(SMALL, min_size=1, prepare=prepare) as pool:
            assert isinstance(pool, Pool)
            await pool.wait_ready()
            async with pool.sandbox() as sb:
                assert await sb.read_text("/tmp/prepared") == sb.sandbox_id
            assert sb.sandbox_id in prepared
            assert pool.name.startswith("rock-test-busybox-latest-")
            assert cluster.statistics().pool(pool.name).hits == 1


async def test_a_pool_serves_task_environments(sdk: SandboxCluster) -> None:
    """A `Pool` is a `SandboxFactory`: each episode's reset takes a warm sandbox."""
    from rock_sdk.envs import SandboxFactory, TaskEnv, TaskSpec

    task = TaskSpec(
        name="pooled",
        image=PY_IMAGE,
        instruction="Write 'hi' into /tmp/out.",
        verifier='test "$(cat /tmp/out)" = hi',
        cpus=0.2,
        memory="256m",
    )
    async with sdk.open_pool(task.sandbox_config(), min_size=1, name="it-task") as pool:
        factory: SandboxFactory = pool  # checked by mypy as well as here
        assert isinstance(factory, SandboxFactory)
        env = TaskEnv(task, sandbox=pool)
        used = []
        for _ in range(2):
            await pool.wait_ready()
            _, info = await env.areset()
            used.append(info["sandbox_id"])
            await env.astep("<bash>echo hi > /tmp/out</bash>")
            _, reward, terminated, _, _ = await env.astep("<submit/>")
            assert (reward, terminated) == (1.0, True)
        await env.aclose()
        assert pool.statistics().hits == 2 and pool.statistics().misses == 0
        assert len(set(used)) == 2  # a fresh sandbox per episode
        assert not set(used) & pool_containers("it-task")  # each deleted when it ended


async def test_create_many_past_the_hosts_room_shows_who_waits_and_fails_the_rest(
    docker_engine: None,
) -> None:
    async with open_cluster(queue_timeout=2) as sdk:
        (host,) = sdk.statistics().hosts
        cpus = int(host.capacity.cpus)
        whole = SandboxConfig(image=SH_IMAGE, cpus=1, memory="64m")
        seen: list[CreateProgress] = []
        out = io.StringIO()
        result = await sdk.create_many(whole, cpus + 1, on_progress=seen.append, progress=out)
        assert len(result.sandboxes) == cpus
        (failure,) = result.failures
        assert isinstance(failure.error, CapacityError)
        assert str(failure.error).startswith(
            f"sandbox {failure.sandbox_id} found no room within 2 s: it needs 1 cpu and 64 MiB;"
            f" host {host.host_id} ({cpus} cpus, "
        )
        assert any(p.waiting == 1 and p.started == cpus for p in seen), seen
        assert seen[-1].waiting == 0 and seen[-1].failed == 1
        lines = out.getvalue().splitlines()
        stuck = f"create_many: {cpus}/{cpus + 1} sandboxes started, waiting for room: 1 ("
        assert any(line.startswith(stuck) for line in lines), lines
        done = f"create_many: {cpus}/{cpus + 1} sandboxes started, 1 failed ("
        assert lines[-1].startswith(done), lines
