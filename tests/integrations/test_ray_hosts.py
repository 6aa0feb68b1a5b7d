"""`HostSource.from_ray` on a real local Ray cluster: a head and a worker node, started with
``ray start --block`` (each in a session of its own, so the test ends exactly its processes).

On one machine the nodes share the loopback: the worker is given ``--node-ip-address
127.0.0.2`` so that it has an address of its own. The hosts are fake agents named by address,
so the cluster's side needs no SSH; what is real is Ray's node table: node ids, CPUs, custom
resources, a worker that joins and one whose raylet is stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest

from rock_core import ByteStream, HostSource, LinkState, SandboxSpec, open_cluster
from rock_core._host_sets import HostItem, closing
from rock_core.testing import FakeAgent, FakeAgentConnector
from tests.integrations.conftest import require

ray: Any = require("ray", "ray")

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WORKER_IP = "127.0.0.2"
START_TIMEOUT = 120.0  # seconds for a node to start on a loaded machine
SPEC = SandboxSpec(image="img:1", cpus=1, memory=1 << 30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RayNodes:
    """The `ray start --block` processes of one test, each the leader of its own session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.started: list[subprocess.Popen[bytes]] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"node-{len(self.started)}.log", "wb")
        common = ["--block", "--disable-usage-stats", "--object-store-memory=80000000"]
        process = subprocess.Popen(
            ["ray", "start", *common, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
        )
        log.close()
        self.started.append(process)
        return process

    def head(self) -> None:
        self.start(
            "--head",
            f"--port={self.port}",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--temp-dir={self.root / 'head'}",
        )

    def worker(self, *args: str) -> subprocess.Popen[bytes]:
        return self.start(
            f"--address={self.address}",
            f"--node-ip-address={WORKER_IP}",
            f"--temp-dir={self.root / 'worker'}",
            *args,
        )

    def stop(self) -> None:
        """End every process of every session this test started (never anyone else's)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for process in self.started:
                for pid in session_members(process.pid):
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(session_members(p.pid) for p in self.started):
                time.sleep(0.2)
        for process in self.started:
            process.wait(timeout=10)


def session_members(sid: int) -> list[int]:
    """The live processes of session `sid` (zombies left out)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def raylet_of(session: int) -> int:
    """The raylet process of the node started as session `session`."""
    for pid in session_members(session):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if command.endswith(b"/raylet"):
            return pid
    raise AssertionError(f"no raylet in session {session}")


@pytest.fixture
def nodes() -> Iterator[RayNodes]:
    if ray.is_initialized():  # another test's driver: the source must join this cluster
        ray.shutdown()
    # Ray's unix sockets live under its temp dir: a pytest tmp_path is too long for them.
    root = Path(tempfile.mkdtemp(prefix="rock-ray-", dir="/tmp"))
    started = RayNodes(root)
    try:
        started.head()
        wait_for_port(started.port)
        yield started
    finally:
        started.stop()
        shutil.rmtree(root, ignore_errors=True)


def wait_for_port(port: int) -> None:
    """Wait until the head's GCS accepts connections (`ray.init` would hang on it before)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class Agents:
    """A fake agent per address, made when the source first names it."""

    def __init__(self) -> None:
        self.agents: dict[str, FakeAgent] = {}

    def host(self, address: str) -> HostItem:
        agent = self.agents.setdefault(address, FakeAgent(host_id=address))
        return Door(FakeAgentConnector(agent, name=address))


class Door:
    def __init__(self, inner: FakeAgentConnector) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    def connect(self) -> AbstractAsyncContextManager[ByteStream]:
        return self.inner.connect()


async def test_ray_nodes_are_found_followed_and_dropped(nodes: RayNodes) -> None:
    agents = Agents()
    source = HostSource.from_ray(nodes.address, refresh=0.5, host=agents.host)
    with anyio.fail_after(3 * START_TIMEOUT):
        async with open_cluster(source, owner="ray-test") as cluster:
            while not cluster.hosts:  # noqa: ASYNC110 (the head may join the table late)
                await anyio.sleep(0.5)
            (head,) = source.nodes
            assert head.cpus == 1.0 and head.memory > 0 and len(head.node_id) == 56
            assert list(cluster.hosts) == [head.address]

            worker = nodes.worker("--num-cpus=2", '--resources={"sandbox": 1}')
            while WORKER_IP not in cluster.hosts:  # noqa: ASYNC110 (polling Ray's own view)
                await anyio.sleep(0.5)
            seen = {n.address: n for n in source.nodes}
            assert seen[WORKER_IP].cpus == 2.0 and seen[WORKER_IP].node_id != head.node_id
            assert cluster.hosts[WORKER_IP].state == LinkState.CONNECTED
            cluster.drain_host(head.address)
            record = await cluster.create_sandbox(SPEC)
            assert record.host == WORKER_IP  # the joined node takes placements

            os.kill(raylet_of(worker.pid), signal.SIGTERM)  # the worker node leaves
            while WORKER_IP in {n.address for n in source.nodes}:  # noqa: ASYNC110
                await anyio.sleep(0.5)
            assert cluster.hosts[WORKER_IP].drained  # drained, its sandbox kept
            assert record.sandbox_id in agents.agents[WORKER_IP].sandboxes
            await cluster.delete_sandbox(record.sandbox_id)
            while cluster.hosts[WORKER_IP].state != LinkState.LOST:  # noqa: ASYNC110
                await anyio.sleep(0.5)
    assert not ray.is_initialized()  # the source that joined Ray left it


async def test_the_label_filter_keeps_nodes_with_that_resource(nodes: RayNodes) -> None:
    nodes.worker("--num-cpus=1", '--resources={"sandbox": 1}')
    source = HostSource.from_ray(nodes.address, label="sandbox", refresh=0.5)
    with anyio.fail_after(3 * START_TIMEOUT):
        async with closing(source.snapshots()) as sets:
            hosts = await anext(sets)
            while not hosts:  # the worker joins the table after its `ray start` returned
                hosts = await anext(sets)
    assert hosts == [f"ssh://{WORKER_IP}"]
    assert [n.address for n in source.nodes] == [WORKER_IP]
