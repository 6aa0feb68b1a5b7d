"""Host sources: a hostfile changed while a cluster runs, and a Ray node list given as a callable.

The agents are `FakeAgent`s reached by name through `host=`; the clock is virtual (both
backends), so a hostfile polled every second costs no real time. The Slurm source runs a child
process: its tests are in `tests/integration/test_slurm_hosts.py`; Ray's real node table is
read in `tests/integrations/test_ray_hosts.py`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest

from rock_core import (
    BadRequest,
    ByteStream,
    Cluster,
    HostSource,
    SandboxSpec,
    SandboxState,
    TransportError,
    open_cluster,
)
from rock_core._host_sets import HostItem
from rock_core._hostfile_source import parse_hostfile
from rock_core._link import LinkState
from rock_core._options import ClusterOptions
from rock_core._ray_source import ray_nodes
from rock_core.testing import FakeAgent, FakeAgentConnector
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio

GiB = 1 << 30
SPEC = SandboxSpec(image="img:1", cpus=1, memory=GiB)
LINK = ClusterOptions(owner="me", lease=60, grace=30, heartbeat=5, heartbeat_timeout=10)


class Fleet:
    """Fake agents by name, and the `host=` that reaches them (refusing those in `refusing`)."""

    def __init__(self, *names: str) -> None:
        self.agents = {name: FakeAgent(host_id=name) for name in names}
        self.refusing: set[str] = set()
        self.connects: list[str] = []  # the name of each connect tried, in order

    def host(self, name: str) -> HostItem:
        return Door(self, name)

    def links(self, name: str) -> int:
        return len(self.agents[name]._streams)


class Door:
    """A connector to one agent of a `Fleet`, named after it."""

    def __init__(self, fleet: Fleet, name: str) -> None:
        self.fleet, self._name = fleet, name
        self.inner = FakeAgentConnector(fleet.agents[name], name=name)

    @property
    def name(self) -> str:
        return self._name

    def connect(self) -> AbstractAsyncContextManager[ByteStream]:
        self.fleet.connects.append(self._name)
        if self._name in self.fleet.refusing:
            raise TransportError(f"{self._name} refuses")
        return self.inner.connect()


async def until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 (virtual time: each poll costs no real time)
        await anyio.sleep(0.1)


def write(path: Path, text: str) -> None:
    """Replace the file as an editor does: a new file renamed over the old one."""
    new = path.with_suffix(".new")
    new.write_text(text)
    os.replace(new, path)


def on(cluster: Cluster, host_id: str) -> list[str]:
    """The running sandboxes of `cluster` on `host_id`."""
    return [
        r.sandbox_id
        for r in cluster.records()
        if r.host == host_id and r.state is SandboxState.RUNNING
    ]


# ---------------------------------------------------------------------------- hostfiles


def test_a_hostfile_has_one_host_a_line_with_comments_ranges_and_extra_words() -> None:
    text = "# the fleet\n\nnode[01-03] slots=8\n  ssh://me@gpu7:2222  # the big one\nlocal\n"
    assert parse_hostfile(text) == ["node01", "node02", "node03", "ssh://me@gpu7:2222", "local"]
    with pytest.raises(BadRequest, match=r"^host 'node02' is listed twice$"):
        parse_hostfile("node[01-02]\nnode02\n")


async def test_names_become_ssh_addresses_with_the_user_and_port_given(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("node[1-2]\nunix:///run/agent.sock\n")
    source = HostSource.from_hostfile(str(path), user="rl", port=2222)
    sets = source.snapshots()
    assert await anext(sets) == [
        "ssh://rl@node1:2222",
        "ssh://rl@node2:2222",
        "unix:///run/agent.sock",
    ]
    with pytest.raises(BadRequest, match=r"^port must be between 1 and 65535, got 0$"):
        HostSource.from_hostfile(str(path), port=0)
    with pytest.raises(BadRequest, match=r"^refresh must be a positive, finite number of "):
        HostSource.from_hostfile(str(path), refresh=0)


async def test_a_missing_hostfile_fails_the_opening(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(BadRequest, match=rf"^cannot read the hostfile {missing}: "):
        async with open_cluster(HostSource.from_hostfile(str(missing)), LINK):
            pass


async def test_a_hostfile_change_adds_a_host_and_drains_a_removed_one(tmp_path: Path) -> None:
    fleet = Fleet("a", "b", "c")
    path = tmp_path / "hosts"
    path.write_text("a\nb\n")
    source = HostSource.from_hostfile(str(path), refresh=1.0, host=fleet.host)
    async with open_cluster(source, LINK) as cluster:
        assert sorted(cluster.hosts) == ["a", "b"]
        kept = await cluster.create_sandbox(SPEC, sandbox_id="sb-kept")
        first = kept.host
        assert first in ("a", "b")
        other = "b" if first == "a" else "a"

        write(path, f"{first}\nc\n")  # `c` joins, `other` leaves
        await until(lambda: "c" in cluster.hosts and fleet.links(other) == 0)
        assert cluster.hosts["c"].state == LinkState.CONNECTED
        assert cluster.hosts[other].state == LinkState.LOST  # no sandbox: closed at once
        assert cluster.hosts[other].last_error == "removed by its host source"

        write(path, "c\n")  # the host with a sandbox leaves: drained, its sandbox kept
        await until(lambda: cluster.hosts[first].drained)
        for index in range(3):
            record = await cluster.create_sandbox(SPEC, sandbox_id=f"sb-{index}")
            assert record.host == "c"  # the only host that takes placements
        assert on(cluster, first) == ["sb-kept"]
        assert kept.sandbox_id in fleet.agents[first].sandboxes
        await anyio.sleep(30)  # its link stays up as long as its sandbox lives
        assert cluster.hosts[first].state == LinkState.CONNECTED
        assert fleet.links(first) == 1

        await cluster.delete_sandbox("sb-kept")  # its last sandbox ended: the link closes
        await until(lambda: fleet.links(first) == 0)
        assert cluster.hosts[first].state == LinkState.LOST
        assert [h.host_id for h in cluster.statistics().hosts] == ["c"]


async def test_a_host_that_comes_back_is_undrained_or_connected_again(tmp_path: Path) -> None:
    fleet = Fleet("a", "b")
    path = tmp_path / "hosts"
    path.write_text("a\nb\n")
    source = HostSource.from_hostfile(str(path), refresh=1.0, host=fleet.host)
    async with open_cluster(source, LINK, policy="binpack") as cluster:
        record = await cluster.create_sandbox(SPEC, sandbox_id="sb-a")
        assert record.host == "a"
        write(path, "b\n")  # `a` drains (its sandbox lives), `b` has no sandbox
        await until(lambda: cluster.hosts["a"].drained)
        write(path, "a\nb\n")  # back while it drains: undrained, never disconnected
        await until(lambda: not cluster.hosts["a"].drained)
        assert (await cluster.create_sandbox(SPEC)).host == "a"
        assert fleet.links("a") == 1

        write(path, "a\n")  # `b` leaves and is closed...
        await until(lambda: cluster.hosts["b"].state == LinkState.LOST)
        write(path, "a\nb\n")  # ...and comes back as the same host, reconciled
        await until(lambda: cluster.hosts["b"].state == LinkState.CONNECTED)
        assert sorted(h.host_id for h in cluster.statistics().hosts) == ["a", "b"]
        cluster.drain_host("a")
        assert (await cluster.create_sandbox(SPEC)).host == "b"


async def test_a_host_added_later_that_refuses_is_retried_while_it_is_listed(
    tmp_path: Path,
) -> None:
    fleet = Fleet("a", "b")
    fleet.refusing.add("b")
    path = tmp_path / "hosts"
    path.write_text("a\n")
    source = HostSource.from_hostfile(str(path), refresh=1.0, host=fleet.host)
    async with open_cluster(source, LINK) as cluster:
        write(path, "a\nb\n")
        await until(lambda: "b" in cluster.unreachable)
        assert str(cluster.unreachable["b"]) == "b refuses"
        write(path, "a\n")  # unlisted: no longer tried, nor unreachable
        await until(lambda: "b" not in cluster.unreachable)
        tried = fleet.connects.count("b")
        await anyio.sleep(60)  # four times the longest backoff
        assert fleet.connects.count("b") == tried
        write(path, "a\nb\n")
        await until(lambda: "b" in cluster.unreachable)
        fleet.refusing.clear()
        await until(lambda: "b" in cluster.hosts)
        assert "b" not in cluster.unreachable
        assert cluster.hosts["b"].state == LinkState.CONNECTED


async def test_a_bad_address_in_a_later_hostfile_is_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = Fleet("a", "b")
    path = tmp_path / "hosts"
    path.write_text("a\n")

    def host(name: str) -> HostItem:
        return name if "://" in name else fleet.host(name)

    source = HostSource.from_hostfile(str(path), refresh=1.0, host=host)
    async with open_cluster(source, LINK) as cluster:
        write(path, "a\nunix://relative.sock\nb\n")
        await until(lambda: "b" in cluster.hosts)
        assert not cluster.hosts["a"].drained
    assert (
        "host 'unix://relative.sock' left out: host 'unix://relative.sock': a unix socket path "
        "must be absolute" in caplog.text
    )
    with pytest.raises(BadRequest, match=r"^host 'unix://relative.sock': a unix socket path"):
        async with open_cluster(source, LINK):  # in the first set, it fails the opening
            pass


# ---------------------------------------------------------------------------- Ray (fake list)


def node(
    node_id: str,
    address: str,
    *,
    cpus: float = 4,
    alive: bool = True,
    labels: Mapping[str, str] | None = None,
    **resources: float,
) -> dict[str, Any]:
    """One entry of `ray.nodes()`, with the keys the source reads."""
    return {
        "NodeID": node_id,
        "Alive": alive,
        "NodeManagerAddress": address,
        "Resources": {"CPU": cpus, "memory": 8 * GiB, **resources},
        "Labels": dict(labels or {}),
    }


def test_ray_nodes_count_when_alive_with_cpus_and_the_label() -> None:
    table = [
        node("n1", "10.0.0.1", labels={"pool": "rollout"}),
        node("n2", "10.0.0.2", alive=False),
        node("n3", "10.0.0.3", cpus=0),
        node("n4", "10.0.0.4", sandbox=1),
        node("n5", "10.0.0.1", labels={"pool": "train"}),
    ]
    assert [n.node_id for n in ray_nodes(table, None)] == ["n1", "n4", "n5"]
    assert [n.node_id for n in ray_nodes(table, "pool=rollout")] == ["n1"]
    assert [n.node_id for n in ray_nodes(table, "pool")] == ["n1", "n5"]
    assert [n.node_id for n in ray_nodes(table, "sandbox")] == ["n4"]
    first = ray_nodes(table, None)[0]
    assert (first.address, first.cpus, first.memory) == ("10.0.0.1", 4.0, 8 * GiB)
    with pytest.raises(BadRequest, match=r"^label must be None, 'key' or 'key=value', got '=x'$"):
        HostSource.from_ray(label="=x", nodes=lambda: table)


async def test_ray_nodes_that_join_and_leave_are_followed() -> None:
    fleet = Fleet("10.0.0.1", "10.0.0.2")
    table: list[dict[str, Any]] = [node("n1", "10.0.0.1"), node("n1b", "10.0.0.1")]
    source = HostSource.from_ray(refresh=1.0, host=fleet.host, nodes=lambda: list(table))
    async with open_cluster(source, LINK) as cluster:
        assert sorted(cluster.hosts) == ["10.0.0.1"]  # two Ray nodes, one machine
        table.append(node("n2", "10.0.0.2"))
        await until(lambda: "10.0.0.2" in cluster.hosts)
        assert [n.node_id for n in source.nodes] == ["n1", "n1b", "n2"]
        table[:] = [node("n2", "10.0.0.2"), node("n1", "10.0.0.1", alive=False)]
        await until(lambda: cluster.hosts["10.0.0.1"].state == LinkState.LOST)
        assert (await cluster.create_sandbox(SPEC)).host == "10.0.0.2"


async def test_a_ray_list_that_fails_later_keeps_the_hosts() -> None:
    fleet = Fleet("10.0.0.1")
    failing = False

    def nodes() -> Sequence[Mapping[str, Any]]:
        if failing:
            raise ConnectionError("GCS gone")
        return [node("n1", "10.0.0.1")]

    source = HostSource.from_ray(refresh=1.0, host=fleet.host, nodes=nodes)
    async with open_cluster(source, LINK) as cluster:
        failing = True
        await anyio.sleep(10)
        assert cluster.hosts["10.0.0.1"].state == LinkState.CONNECTED
        assert not cluster.hosts["10.0.0.1"].drained


# ---------------------------------------------------------------------------- a reader of one's own


class Listed:
    """A reader of one's own: any object with `snapshots()`; the sets come from a stream."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[list[HostItem]](1)

    async def snapshots(self) -> AsyncIterator[Sequence[HostItem]]:
        async for hosts in self.receive:
            yield hosts


async def test_a_reader_of_ones_own_is_followed_as_a_host_source() -> None:
    fleet = Fleet("a", "b")
    listed = Listed()
    source = HostSource(listed)
    assert source.reader is listed
    await listed.send.send([fleet.host("a")])
    async with open_cluster(source, LINK) as cluster:
        assert sorted(cluster.hosts) == ["a"]
        await listed.send.send([fleet.host("a"), fleet.host("b")])
        await until(lambda: "b" in cluster.hosts)
        await listed.send.send([fleet.host("b")])
        await until(lambda: cluster.hosts["a"].state == LinkState.LOST)
        assert (await cluster.create_sandbox(SPEC)).host == "b"
