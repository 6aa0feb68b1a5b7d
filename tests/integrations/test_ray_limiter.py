"""The cluster-wide start limiter (`open_start_limiter`) on a real local Ray cluster.

A head started with ``ray start --block`` (as `test_ray_hosts` does). Three trainer processes
(`ray_limiter_trainer.py`), each embedding its own core over fake agents, share one limiter:
the starts in flight, counted by the limiter and apart from it by the fake agents' own start
times, never exceed the cap. A trainer killed while it holds permits loses them after the
lease; a crashed limiter actor is restarted by Ray and re-adopts the permits held (nothing
counted twice, no hang); a removed one fails the calls with `TransportError`, and is made again
by the next call.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from rock_core import BadRequest, TransportError
from tests.conftest import SH_IMAGE
from tests.integrations.conftest import require
from tests.integrations.test_ray_hosts import RayNodes, wait_for_port

ray: Any = require("ray", "ray")

from rock_sdk.integrations.ray import open_start_limiter  # noqa: E402

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOT = Path(__file__).parents[2]
TRAINER = Path(__file__).with_name("ray_limiter_trainer.py")


@pytest.fixture
def head() -> Iterator[RayNodes]:
    if ray.is_initialized():
        ray.shutdown()
    root = Path(tempfile.mkdtemp(prefix="rock-rayl-", dir="/tmp"))
    started = RayNodes(root)
    try:
        started.head()
        wait_for_port(started.port)
        yield started
    finally:
        if ray.is_initialized():
            ray.shutdown()
        started.stop()
        shutil.rmtree(root, ignore_errors=True)


def trainer(head: RayNodes, name: str, *args: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    command = [sys.executable, str(TRAINER), head.address, name, *map(str, args)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE)


def peak(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment."""
    moments = sorted([(b, 1) for b, _ in spans] + [(e, -1) for _, e in spans])
    most = now = 0
    for _, step in moments:  # at a tie an end (-1) sorts first: touching spans do not overlap
        now += step
        most = max(most, now)
    return most


async def stats(name: str) -> dict[str, Any]:
    actor = ray.get_actor(name, namespace="rock")
    return dict(await actor.statistics.remote())


async def test_three_trainers_share_one_cap(head: RayNodes, tmp_path: Path) -> None:
    cap, creates = 3, 12
    outs = [tmp_path / f"t{i}.json" for i in range(3)]
    procs = [trainer(head, "lim-share", cap, 30, creates, 0.3, out) for out in outs]
    for proc in procs:
        assert await anyio.to_thread.run_sync(proc.wait, 240) == 0
    results = [json.loads(out.read_text()) for out in outs]
    assert [r["created"] for r in results] == [creates] * 3
    spans = [(b, e) for r in results for b, e in r["spans"]]
    assert len(spans) == 3 * creates
    # Apart from the limiter: the agents' own start times, all three processes merged.
    assert peak(spans) <= cap
    # And shared, not taken in turns: starts of different processes overlapped.
    per = [[(b, e) for b, e in r["spans"]] for r in results]
    overlaps = sum(
        1
        for i in range(3)
        for j in range(i + 1, 3)
        for b1, e1 in per[i]
        for b2, e2 in per[j]
        if b1 < e2 and b2 < e1
    )
    assert overlaps > 0
    ray.init(address=head.address, log_to_driver=False)
    counts = await stats("lim-share")
    assert counts["peak"] == cap  # the limiter's own record: full, never over
    assert counts["grants"] == 3 * creates
    assert (counts["held"], counts["waiting"], counts["expired"]) == (0, 0, 0)


async def test_a_killed_trainer_loses_its_permits_after_the_lease(head: RayNodes) -> None:
    ray.init(address=head.address, log_to_driver=False)
    holder = trainer(head, "lim-lease", 2, 3, 2, 600, "-")
    try:
        with anyio.fail_after(120):
            while (await _maybe_stats("lim-lease")).get("held") != 2:  # noqa: ASYNC110 (polling the actor)
                await anyio.sleep(0.2)
        async with open_start_limiter("lim-lease", max_starts=2, lease=3) as gate:
            with anyio.move_on_after(1.0):
                await gate.acquire("mine")  # the dead-to-be trainer holds both
            assert "mine" not in gate.holds
            holder.send_signal(signal.SIGKILL)
            began = anyio.current_time()
            with anyio.fail_after(30):
                await gate.acquire("mine")
            assert anyio.current_time() - began < 15  # the 3 s lease, not forever
            counts = await gate.statistics()
            assert counts["expired"] == 2 and counts["held"] == 1
            await gate.release("mine")
    finally:
        holder.kill()
        holder.wait()


async def _maybe_stats(name: str) -> dict[str, Any]:
    try:
        return await stats(name)
    except ValueError:  # not made yet
        return {}


async def test_a_crashed_limiter_restarts_and_a_removed_one_fails_cleanly(head: RayNodes) -> None:
    ray.init(address=head.address, log_to_driver=False)
    async with open_start_limiter("lim-crash", max_starts=2, lease=3) as gate:
        await gate.acquire("t1")
        await gate.acquire("t2")
        pid = (await gate.statistics())["pid"]
        os.kill(pid, signal.SIGKILL)  # the actor's worker crashes: Ray restarts it
        with anyio.fail_after(60):
            counts = await gate.statistics()
        assert counts["restarted"] is True and counts["pid"] != pid
        with anyio.move_on_after(4.0):  # settling, then the renews re-adopt t1 and t2
            await gate.acquire("t3")
        assert "t3" not in gate.holds
        counts = await gate.statistics()
        assert (counts["held"], counts["adopted"], counts["peak"]) == (2, 2, 2)
        await gate.release("t1")
        with anyio.fail_after(10):
            await gate.acquire("t3")
        assert (await gate.statistics())["held"] == 2

        ray.kill(ray.get_actor("lim-crash", namespace="rock"))  # removed for good
        with anyio.fail_after(30), pytest.raises(TransportError) as caught:
            await gate.acquire("t4")
        assert "start limiter 'lim-crash'" in str(caught.value)
        with anyio.fail_after(60):  # the next call makes it again; renews re-adopt t2, t3
            while (counts := await gate.statistics())["held"] < 2:  # noqa: ASYNC110 (polling)
                await anyio.sleep(0.2)
        assert counts["restarted"] is False
        assert counts["held"] == 2 and counts["adopted"] == 2

        with pytest.raises(BadRequest, match="exists with other limits"):
            async with open_start_limiter("lim-crash", max_starts=5, lease=3):
                pass
    with pytest.raises(BadRequest, match="max_starts must be between 1 and"):
        async with open_start_limiter("lim-x", max_starts=-1):
            pass
    with pytest.raises(BadRequest, match="a limiter's name must be"):
        async with open_start_limiter("bad name\0", max_starts=1):
            pass
    ray.shutdown()
    with pytest.raises(BadRequest, match=r"call ray.init\(address=...\) first"):
        async with open_start_limiter("lim-y", max_starts=1):
            pass


def limiter_snippet() -> str:
    text = (ROOT / "docs" / "scale-out.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    found = [b for b in blocks if "open_start_limiter(" in b]
    assert len(found) == 1
    return found[0]


async def test_the_docs_snippet_runs_as_shown(head: RayNodes, docker_engine: None) -> None:
    env = {**os.environ, "RAY_ADDRESS": head.address, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-c", limiter_snippet()]
    done = await anyio.run_process(command, env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert done.stdout.decode().split("\n")[-3:] == ["running", "1 1", ""]


VERL_YAML = """\
tools:
  - class_name: rock_sdk.integrations.verl.SandboxTool
    config:
      type: native
      sandbox: {{image: "{image}", cpus: 0.1, memory: 64m}}
      pool_min_size: 0
      pool_max_size: 3
      start_limit: 1
      start_limiter: lim-verl
"""


async def test_the_verl_tool_shares_the_limiter(
    head: RayNodes, docker_engine: None, tmp_path: Path
) -> None:
    registry = require("verl.tools.tool_registry", "verl")
    from rock_sdk.integrations.verl import SandboxTool, close_pools

    ray.init(address=head.address, log_to_driver=False)
    path = tmp_path / "tools.yaml"
    path.write_text(VERL_YAML.format(image=SH_IMAGE))
    [tool] = registry.initialize_tools_from_config(str(path))
    try:
        async with anyio.create_task_group() as tg:  # three at once, one start at a time
            for i in range(3):
                tg.start_soon(tool.create, f"trajectory-{i}")
        for i in range(3):
            text, _, _ = await tool.execute(f"trajectory-{i}", {"command": "echo hi"})
            assert text.text == "hi\n"
        counts = await stats("lim-verl")
        assert counts["grants"] >= 3 and counts["peak"] == 1
        assert counts["max_starts"] == 1
    finally:
        await close_pools()
    assert (await stats("lim-verl"))["held"] == 0
    for bad, message in (
        ({"start_limit": -1}, "max_starts must be between 1 and"),
        ({"start_rate": float("nan")}, "rate must be finite"),
        ({"start_limit": 2, "start_limiter": "a b"}, "a limiter's name must be"),
    ):
        with pytest.raises(BadRequest, match=f"rock verl tool config: .*{message}"):
            SandboxTool({"type": "native", **bad}, None)
