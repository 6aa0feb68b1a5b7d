"""A host source edited to garbage while the cluster runs: the garbage is refused with
`BadRequest`, never a foreign exception that would end the follower (and the cluster)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from rock_core import BadRequest, HostSource, open_cluster
from rock_core._addresses import expand, parse
from rock_core._host_sets import HostItem
from rock_core._link import LinkState
from tests.core.test_host_sources import LINK, Fleet, node, until, write
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

HUGE = "9" * 5000  # more digits than Python converts to an int


def test_a_range_with_a_huge_number_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match=r"^range \[0-9999"):
        expand([f"n[0-{HUGE}]"])


def test_a_malformed_ssh_address_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match=r"^host 'ssh://\[::1': Invalid IPv6 URL$"):
        parse("ssh://[::1")


@pytest.mark.anyio
async def test_a_hostfile_edited_to_garbage_keeps_the_cluster_and_its_hosts(
    tmp_path: Path,
) -> None:
    fleet = Fleet("a", "b")
    path = tmp_path / "hosts"
    path.write_text("a\n")

    def host(name: str) -> HostItem:
        return name if "://" in name else fleet.host(name)

    source = HostSource.from_hostfile(str(path), refresh=1.0, host=host)
    async with open_cluster(source, LINK) as cluster:
        write(path, f"a\nn[0-{HUGE}]\n")  # the whole file is refused: the last set is kept
        write(path, "a\nssh://[::1\nb\n")  # one bad line is left out, the others count
        await until(lambda: "b" in cluster.hosts)
        assert not cluster.hosts["a"].drained


def test_ranges_that_multiply_past_the_limit_are_a_bad_request() -> None:
    with pytest.raises(BadRequest, match=r"^the ranges in host 'n\[0-9999\]\[0-9999\]' are too"):
        expand(["n[0-9999][0-9999]"])  # each range is allowed; their product is 10**8 hosts


@pytest.mark.anyio
async def test_a_ray_node_table_that_turns_malformed_keeps_the_hosts() -> None:
    fleet = Fleet("10.0.0.1")
    table: list[dict[str, Any]] = [node("n1", "10.0.0.1")]

    def nodes() -> Sequence[Mapping[str, Any]]:
        return table

    source = HostSource.from_ray(refresh=1.0, host=fleet.host, nodes=nodes)
    async with open_cluster(source, LINK) as cluster:
        for bad in ({"CPU": "lots"}, {"CPU": 4, "memory": float("nan")}, {"CPU": [4]}):
            table[:] = [{**node("n1", "10.0.0.1"), "Resources": bad}]
            await anyio.sleep(3)  # three reads of it, each refused
        table[:] = [None]  # type: ignore[list-item]
        await anyio.sleep(3)
        assert cluster.hosts["10.0.0.1"].state == LinkState.CONNECTED
        assert not cluster.hosts["10.0.0.1"].drained


@pytest.mark.anyio
async def test_a_hostfile_seen_mid_rewrite_drains_nothing(tmp_path: Path) -> None:
    fleet = Fleet("a", "b")
    path = tmp_path / "hosts"
    path.write_text("a\nb\n")
    source = HostSource.from_hostfile(str(path), refresh=1.0, host=fleet.host)
    async with open_cluster(source, LINK) as cluster:
        # Rewritten in place, as `Path.write_text` does, by a writer slow enough that the
        # next read (one refresh after the opening, in virtual time) sees it half written;
        # each state lasts less than a refresh, as a real write's do.
        with path.open("w") as file:
            await anyio.sleep(0.6)
            file.write("a\n")
            file.flush()
            await anyio.sleep(0.6)
            file.write("b\n")
        await anyio.sleep(5)
        assert fleet.connects.count("a") == fleet.connects.count("b") == 1
        assert not cluster.hosts["a"].drained and not cluster.hosts["b"].drained
        write(path, "a\n")  # a change that stays is still followed
        await until(lambda: cluster.hosts["b"].state == LinkState.LOST)


@pytest.mark.anyio
async def test_a_hostfile_path_that_is_no_path_is_a_bad_request(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match=r"^path must be a file's path, got None$"):
        HostSource.from_hostfile(None)  # type: ignore[arg-type]
    source = HostSource.from_hostfile(f"{tmp_path}/hosts\x00")
    with pytest.raises(BadRequest, match=r"^cannot read the hostfile .*: embedded null byte$"):
        async with open_cluster(source, LINK):
            pass


def test_a_slurm_node_list_with_a_nul_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match=r"^nodelist must be None or a Slurm node list, got 'n"):
        HostSource.from_slurm(nodelist="n[1-3]\x00")


class Twice:
    """A reader whose first set lists one host twice (``a`` and ``ssh://a`` in a hostfile
    are one host once they are addresses)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    async def snapshots(self) -> AsyncIterator[Sequence[HostItem]]:
        yield [self.fleet.host("a"), self.fleet.host("a")]
        await anyio.sleep_forever()


@pytest.mark.anyio
async def test_a_host_listed_twice_in_the_first_set_is_one_host() -> None:
    fleet = Fleet("a")
    async with open_cluster(HostSource(Twice(fleet)), LINK) as cluster:
        assert sorted(cluster.hosts) == ["a"]
        assert fleet.links("a") == 1


@pytest.mark.anyio
async def test_a_hostfile_rewritten_more_often_than_it_is_read_is_still_followed(
    tmp_path: Path,
) -> None:
    fleet = Fleet("a", "b")
    path = tmp_path / "hosts"
    path.write_text("a\nb\n")
    source = HostSource.from_hostfile(str(path), refresh=1.0, host=fleet.host)
    async with open_cluster(source, LINK) as cluster:
        for _ in range(8):  # a generator that writes the file twice a refresh
            write(path, "a\n")  # the same text, a new stamp (mtime, inode) every time
            await anyio.sleep(0.5)
        assert cluster.hosts["b"].state == LinkState.LOST
