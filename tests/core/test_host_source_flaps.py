"""A host set that flaps (a host leaves, returns, leaves and returns) while a removed host's
link is still closing: one retirement at a time, and one link to the host at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
import pytest

from rock_core import ByteStream, HostSource, open_cluster
from rock_core._host_sets import HostItem
from rock_core._link import LinkState
from tests.core.test_host_sources import LINK, SPEC, Door, Fleet, until, write
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio

CLOSING = 20.0  # seconds a closing link of `SlowDoor` takes (a dead SSH peer's close)


class SlowDoor(Door):
    """A `Door` whose link takes `CLOSING` seconds to close, whatever cancels it."""

    @asynccontextmanager
    async def _slow(self) -> AsyncIterator[ByteStream]:
        try:
            async with Door.connect(self) as stream:
                yield stream
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(CLOSING)

    def connect(self) -> AbstractAsyncContextManager[ByteStream]:
        return self._slow()


async def test_a_host_that_flaps_while_its_link_closes_ends_with_one_link(
    tmp_path: Path,
) -> None:
    fleet = Fleet("a", "b")

    def host(name: str) -> HostItem:
        return SlowDoor(fleet, name)

    path = tmp_path / "hosts"
    path.write_text("a\nb\n")
    source = HostSource.from_hostfile(str(path), refresh=1.0, host=host)
    async with open_cluster(source, LINK) as cluster:
        for text in ("a\n", "a\nb\n", "a\n", "a\nb\n"):  # each read while `b` still closes
            write(path, text + "#" * len(fleet.connects))  # a new size: a new stamp
            await anyio.sleep(2.5)  # two reads: a change counts once it stays
        await anyio.sleep(4 * CLOSING)
        await until(lambda: cluster.hosts["b"].state == LinkState.CONNECTED)
        await anyio.sleep(4 * CLOSING)
        assert cluster.hosts["b"].state == LinkState.CONNECTED
        assert fleet.links("b") == 1
        assert not cluster.hosts["b"].drained


class Burst:
    """A reader that yields a host's leaving and coming back with no wait in between."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.go = anyio.Event()

    async def snapshots(self) -> AsyncIterator[Sequence[HostItem]]:
        both = [self.fleet.host("a"), self.fleet.host("b")]
        yield both
        await self.go.wait()
        yield both[:1]
        yield both
        await anyio.sleep_forever()


async def test_a_host_that_leaves_and_comes_back_at_once_stays_undrained() -> None:
    fleet = Fleet("a", "b")
    burst = Burst(fleet)
    async with open_cluster(HostSource(burst), LINK, policy="binpack") as cluster:
        cluster.drain_host("a")
        await cluster.create_sandbox(SPEC, sandbox_id="sb-b")  # on `b`, which is listed
        cluster.drain_host("a", False)
        burst.go.set()
        await anyio.sleep(10)
        assert not cluster.hosts["b"].drained
        assert cluster.hosts["b"].state == LinkState.CONNECTED
