"""The agent as a Ray actor (`rock_sdk.integrations.ray`) on a real local Ray cluster.

A head (no CPUs, so it is no host) and two worker nodes started with ``ray start --block`` (as
`test_ray_hosts` does), on their own loopback addresses 127.0.0.2 and 127.0.0.3. Not in network
namespaces: Ray's processes on one machine talk over its shared memory store and unix sockets
as well as TCP, so a node in a namespace of its own would test Ray's setup more than ours; our
transport carries no traffic but Ray's actor calls. What is real: Ray's actors, pinned to their
nodes, real socket agents they start, real Docker containers, and a real ``ray.kill``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from rock_core import (
    BadRequest,
    ByteStream,
    HostUnreachable,
    LinkState,
    SandboxLost,
    SandboxState,
    TransportError,
    local_owner,
)
from rock_sdk import SandboxConfig, open_cluster
from tests.conftest import SH_IMAGE, labelled_containers
from tests.integrations.conftest import require
from tests.integrations.test_ray_hosts import RayNodes, wait_for_port

ray: Any = require("ray", "ray")

from rock_sdk.integrations.ray import RayAgentConnector, actor_name, ray_hosts  # noqa: E402

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# Each test's workers have addresses of their own: an address is an agent's host id, and two
# agents with one host id on one engine would take each other's containers (tests run in
# parallel; test_ray_hosts uses 127.0.0.2).
WORKER_IPS = {
    "test_sandboxes_through_actors_and_a_killed_actor": ("127.0.0.12", "127.0.0.13"),
    "test_cancelled_receives_lose_no_bytes_and_bad_input": ("127.0.0.22", "127.0.0.23"),
    "test_the_docs_snippet_and_a_program_that_stops_calling": ("127.0.0.32", "127.0.0.33"),
}
START_TIMEOUT = 180.0
CONFIG = SandboxConfig(image=SH_IMAGE, cpus=0.1, memory="64m")
# The lease outlasts a worker restart on a loaded machine (the kept node's actor crashes).
FAST = {"heartbeat": 1.0, "heartbeat_timeout": 5.0, "lease": 20.0, "grace": 15.0}
ROOT = Path(__file__).parents[2]


class Cluster2:
    """A Ray head with no CPUs and two workers with a ``rock`` resource; agents made by tests."""

    def __init__(self, root: Path, workers: tuple[str, str]) -> None:
        self.workers = workers
        self.nodes = RayNodes(root)
        self.sockets = root / "agents"  # every agent the relays start listens under here

    def start(self) -> None:
        self.nodes.start(
            "--head",
            f"--port={self.nodes.port}",
            "--num-cpus=0",
            "--include-dashboard=false",
            f"--temp-dir={self.nodes.root / 'head'}",
        )
        wait_for_port(self.nodes.port)
        for ip in self.workers:
            self.nodes.start(
                f"--address={self.nodes.address}",
                f"--node-ip-address={ip}",
                f"--temp-dir={self.nodes.root / ip}",
                "--num-cpus=2",
                '--resources={"rock": 1}',
            )

    def stop(self) -> None:
        try:
            self.nodes.stop()
        finally:
            # The agents left their relays' sessions on purpose (they outlive an actor): end
            # exactly the ones started for this test, found by their socket folder (the
            # test's, or the default one under this test's worker addresses).
            default = Path(f"/tmp/rock-ray-{os.geteuid()}")
            folders = [self.sockets, *(default / ip for ip in self.workers)]
            for pid in [pid for folder in folders for pid in agents_under(folder)]:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            # A test that failed left its sandboxes to agents that are gone now: remove them
            # (their host ids are this test's worker addresses, no other test's).
            left = [c for ip in self.workers for c in containers(f"rock.host={ip}")]
            if left:
                subprocess.run(["docker", "rm", "-f", *left], capture_output=True, check=False)


def agents_under(folder: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"rock_agent\0serve" in command and str(folder).encode() in command:
                found.append(int(entry.name))
    return found


@pytest.fixture
def ray_cluster(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cluster2]:
    if ray.is_initialized():
        ray.shutdown()
    # Any local ray.init() of this user (another program's) writes ~/.ray/auth_token, and a
    # head started while it exists wants it from every caller: one that came or went between
    # the head's start and a join failed this test with InvalidAuthToken. Ours runs without.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    root = Path(tempfile.mkdtemp(prefix="rock-rayt-", dir="/tmp"))
    cluster = Cluster2(root, WORKER_IPS[request.node.name])
    try:
        cluster.start()
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def containers(label: str) -> list[str]:
    return labelled_containers(label)


async def wait_until(check: Any, what: str, timeout: float = START_TIMEOUT) -> None:
    with anyio.move_on_after(timeout):
        while not check():  # noqa: ASYNC110 (polling Ray's, Docker's and the cluster's views)
            await anyio.sleep(0.3)
        return
    raise AssertionError(f"not within {timeout:g} s: {what}")


async def test_sandboxes_through_actors_and_a_killed_actor(ray_cluster: Cluster2) -> None:
    # This process's own owner id (the default): the engine is shared with parallel test
    # sessions, whose leak check removes containers of owners that are not live local ones.
    owner = local_owner()
    workers = ray_cluster.workers
    source = ray_hosts(
        ray_cluster.nodes.address,
        label="rock",
        refresh=0.5,
        socket_dir=str(ray_cluster.sockets),
        idle_exit=30.0,
    )
    async with open_cluster(source, owner=owner, **FAST) as cluster:
        await wait_until(
            lambda: (
                set(cluster.hosts) == set(workers)
                and all(h.state == LinkState.CONNECTED for h in cluster.hosts.values())
            ),
            "both workers connected",
        )
        nodes = {n.address: n.node_id for n in source.nodes}  # type: ignore[attr-defined]
        first = await cluster.create_sandbox(CONFIG)
        second = await cluster.create_sandbox(CONFIG)
        on = {(await s.status()).host: s for s in (first, second)}
        assert set(on) == set(workers)  # spread: one on each worker
        for ip, sandbox in on.items():
            await sandbox.create_session("work")
            await sandbox.arun("cd /tmp && X=41", session="work", check=True)
            result = await sandbox.arun("echo $((X+1)) $(pwd)", session="work", check=True)
            assert result.output == "42 /tmp\n"
            await sandbox.write_file("/tmp/f.bin", bytes(range(256)) * 1000)
            assert await sandbox.read_file("/tmp/f.bin") == bytes(range(256)) * 1000
            assert containers(f"rock.sandbox={sandbox.sandbox_id}")
            assert containers(f"rock.owner={owner}")
            actor = ray.get_actor(actor_name(nodes[ip]), namespace="rock")
            described = await actor.describe.remote()
            assert described["host_id"] == ip and described["streams"] >= 1

        # The actor's worker crashes: Ray restarts it, the link comes back, nothing is lost.
        kept_actor = ray.get_actor(actor_name(nodes[workers[0]]), namespace="rock")
        crashed = (await kept_actor.describe.remote())["pid"]
        os.kill(crashed, signal.SIGKILL)
        await wait_until(
            lambda: cluster.hosts[workers[0]].state != LinkState.CONNECTED, "link down", 60
        )
        await wait_until(
            lambda: cluster.hosts[workers[0]].state == LinkState.CONNECTED, "link back", 60
        )
        assert (await kept_actor.describe.remote())["pid"] != crashed
        survivor = on[workers[0]]
        assert survivor.state == SandboxState.RUNNING
        assert (await survivor.arun("cat /tmp/f.bin | wc -c", session="work")).output == "256000\n"

        # A stream of the doomed node's own, to see a dead actor's errors.
        doomed, kept = workers[1], workers[0]
        connector = RayAgentConnector(
            nodes[doomed], host_id=doomed, socket_dir=str(ray_cluster.sockets)
        )
        async with connector.connect() as stream:
            ray.kill(ray.get_actor(actor_name(nodes[doomed]), namespace="rock"))
            with pytest.raises(TransportError, match="actor is gone or unreachable"):
                with anyio.fail_after(60):
                    await stream.receive()
            await stream.send(b"x")  # sends are not waited for: the failure comes with drain
            with pytest.raises(TransportError, match="actor is gone or unreachable"):
                await stream.drain()  # type: ignore[attr-defined]
        with pytest.raises(TransportError, match="is gone \\(killed, or its node died\\)"):
            async with connector.connect():
                pass

        lost = on[doomed]
        await wait_until(lambda: lost.state == SandboxState.LOST, "the sandbox lost", 60)
        with pytest.raises(SandboxLost):
            await lost.arun("true")
        # The agent on the node reaps the owner's sandbox once the lease (20 s) ends.
        await wait_until(lambda: not containers(f"rock.sandbox={lost.sandbox_id}"), "reaped", 120)
        # The other node is untouched.
        assert (await on[kept].arun("echo $X", session="work")).output == "41\n"
    assert not containers(f"rock.owner={owner}")


async def join_with_workers(ray_cluster: Cluster2) -> list[dict[str, Any]]:
    """Join the test's Ray cluster once both workers are in its node table; their entries."""
    await anyio.to_thread.run_sync(
        lambda: ray.init(address=ray_cluster.nodes.address, log_to_driver=False)
    )
    workers: list[dict[str, Any]] = []
    with anyio.fail_after(START_TIMEOUT):
        while len(workers) < 2:
            await anyio.sleep(0.5)
            workers = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("rock")]
    return workers


class Noisy:
    """A stream whose every receive is first tried and cancelled after a random few ms."""

    def __init__(self, inner: ByteStream) -> None:
        self.inner = inner
        self.cancelled = 0

    async def send(self, item: bytes, /) -> None:
        await self.inner.send(item)

    async def receive(self, max_bytes: int = 65536, /) -> bytes:
        with anyio.move_on_after(random.uniform(0, 0.004)) as scope:
            return await self.inner.receive(max_bytes)
        if scope.cancelled_caught:
            self.cancelled += 1
        return await self.inner.receive(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


class NoisyConnector:
    def __init__(self, inner: RayAgentConnector) -> None:
        self.inner = inner
        self.streams: list[Noisy] = []
        self.leased = True

    @property
    def name(self) -> str:
        return self.inner.name

    def connect(self) -> AbstractAsyncContextManager[ByteStream]:
        return self._open()

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[ByteStream]:
        async with self.inner.connect() as stream:
            self.streams.append(Noisy(stream))
            yield self.streams[-1]


async def test_cancelled_receives_lose_no_bytes_and_bad_input(ray_cluster: Cluster2) -> None:
    node = (await join_with_workers(ray_cluster))[0]
    inner = RayAgentConnector(node["NodeID"], socket_dir=str(ray_cluster.sockets))
    noisy = NoisyConnector(inner)
    async with open_cluster([noisy], owner=local_owner()) as cluster:
        sandbox = await cluster.create_sandbox(CONFIG)
        expected = "".join(f"{i}\n" for i in range(1, 30001))
        for _ in range(3):
            result = await sandbox.arun("seq 1 30000", check=True)
            assert result.output == expected
        blob = os.urandom(3 << 20)
        await sandbox.write_file("/tmp/blob", blob)
        assert await sandbox.read_file("/tmp/blob") == blob
        actor = ray.get_actor(actor_name(node["NodeID"]), namespace="rock")
        described = await actor.describe.remote()
    assert sum(s.cancelled for s in noisy.streams) > 10
    assert described["resent"] > 0  # some cancelled receive had taken bytes: handed out again

    # Bad input: our errors, never Ray's.
    with pytest.raises(BadRequest, match="56 hex digits"):
        RayAgentConnector("not-a-node")
    with pytest.raises(BadRequest, match="idle_exit"):
        RayAgentConnector(node["NodeID"], idle_exit=float("nan"))
    with pytest.raises(BadRequest, match="socket_dir"):
        RayAgentConnector(node["NodeID"], socket_dir="relative/dir")
    with pytest.raises(HostUnreachable, match="no Ray node has id"):
        async with RayAgentConnector("ab" * 28).connect():
            pass


PROGRAM = """
import sys, time, anyio, ray
from rock_sdk import SandboxConfig, open_cluster
from rock_sdk.integrations.ray import RayAgentConnector

async def main():
    ray.init(address=sys.argv[1], log_to_driver=False)
    node = next(n for n in ray.nodes() if n["Alive"] and n["Resources"].get("rock"))
    host = RayAgentConnector(node["NodeID"], socket_dir=sys.argv[2])
    async with open_cluster([host], heartbeat=1, heartbeat_timeout=4, lease=6) as cluster:
        sandbox = await cluster.create_sandbox(SandboxConfig(image=sys.argv[3], memory="64m"))
        print(sandbox.sandbox_id, flush=True)
        await anyio.sleep(3600)

anyio.run(main)
"""


def scale_out_snippet() -> str:
    text = (ROOT / "docs" / "scale-out.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.DOTALL) if "ray_hosts(" in b]
    assert len(blocks) == 1
    return blocks[0]


async def test_the_docs_snippet_and_a_program_that_stops_calling(ray_cluster: Cluster2) -> None:
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.nodes.address, "PYTHONPATH": str(ROOT / "src")}
    await join_with_workers(ray_cluster)  # as a job would start: once its nodes are up
    await anyio.to_thread.run_sync(ray.shutdown)
    snippet = scale_out_snippet()
    done = await anyio.run_process([sys.executable, "-c", snippet], env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    said = done.stdout.decode().split()
    assert said[:2] == ["hello", "on"] and said[2] in ray_cluster.workers

    # A program that stops calling with its sandbox running (through the node's actor that
    # the snippet made, which keeps its agent folder, the default one): the actor drops its
    # stream after STALE (60) seconds without a call, the agent's lease (6 s) has ended, and its
    # reaper removes the sandbox.
    program = await anyio.open_process(
        [
            sys.executable,
            "-c",
            PROGRAM,
            ray_cluster.nodes.address,
            str(ray_cluster.sockets),
            SH_IMAGE,
        ],
        env=env,
    )
    try:
        assert program.stdout is not None
        with anyio.fail_after(START_TIMEOUT):
            line = await program.stdout.receive()
        sandbox_id = line.decode().split()[0]
        assert containers(f"rock.sandbox={sandbox_id}")
        # Stopped, not killed yet: to the actor it is the same (Ray tells a detached actor
        # nothing of its callers), and a live owner's container is no leak to a parallel
        # test session's leak check while the agent has not reaped it.
        program.send_signal(signal.SIGSTOP)
        await wait_until(lambda: not containers(f"rock.sandbox={sandbox_id}"), "reaped", 150)
    finally:
        program.kill()
        await program.wait()
