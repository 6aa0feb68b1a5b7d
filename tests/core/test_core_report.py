"""A core's reports to its agents for the live view: what each host is told (plain calls), and
when it is told (the driver in virtual time, over stand-in connections)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from rock_core import ClusterStatistics, PoolStatistics, TransportError
from rock_core._capacity import HostStatistics, Resources
from rock_core._core_report import REPORT_EVERY, core_reports, report_changes
from rock_core._messages_top import CoreReport, PoolView
from rock_core._protocol import Done
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

GiB = 1 << 30


def host(host_id: str, starting: int) -> HostStatistics:
    return HostStatistics(
        host_id=host_id,
        capacity=Resources(8, 16 * GiB),
        used=Resources(1, GiB, 1),
        starting=starting,
        max_starts=4,
        draining=False,
        images=(),
    )


def pool(hits: int) -> PoolStatistics:
    return PoolStatistics(
        name="warm",
        image="python:3.11",
        min_size=2,
        max_size=4,
        target=2,
        size=2,
        ready=1,
        in_flight=1,
        handed_out=1,
        hits=hits,
        misses=1,
        refills=3,
        refill_rate=0.0,
        failures=0,
        resets=0,
        discarded=0,
        last_error="",
    )


def statistics(queued: int = 0, starting: int = 0, hits: int | None = None) -> ClusterStatistics:
    return ClusterStatistics(
        hosts=(host("a", starting), host("b", 0)),
        queue_depth=queued,
        placed=1,
        starting=starting,
        placements=1,
        rejections=0,
        oldest_queued_since=None,
        pools=() if hits is None else (pool(hits),),
    )


def test_every_host_gets_the_queue_its_own_starts_and_every_pool() -> None:
    reports = core_reports(statistics(queued=3, starting=2, hits=5))
    warm = PoolView(
        name="warm", image="python:3.11", size=2, ready=1, target=2, handed_out=1, hits=5, misses=1
    )
    assert reports == {
        "a": CoreReport(queued=3, starting=2, pools=[warm]),
        "b": CoreReport(queued=3, starting=0, pools=[warm]),
    }


@dataclass
class Welcome:
    capabilities: list[str]


@dataclass
class Conn:
    """A stand-in for an `AgentConnection`: it records the reports it is sent."""

    capabilities: list[str] = field(default_factory=lambda: ["top"])
    sent: list[tuple[int, int, int]] = field(default_factory=list)
    closed: bool = False
    broken: bool = False

    @property
    def welcome(self) -> Welcome:
        return Welcome(self.capabilities)

    async def call(self, report: CoreReport, expect: type[Done]) -> Done:
        if self.broken:
            raise TransportError("link broken")
        hits = report.pools[0].hits if report.pools else -1
        self.sent.append((report.queued, report.starting, hits))
        return Done(id=1)


@dataclass
class Host:
    host_id: str
    connection: Any


@pytest.mark.anyio
async def test_a_host_is_told_only_changes_and_a_new_connection_starts_from_nothing() -> None:
    now = statistics()
    a, b, old = Conn(), Conn(capabilities=["stats"]), Conn()
    hosts = [Host("a", a), Host("b", b)]

    async def rounds(count: int) -> None:
        await anyio.sleep(REPORT_EVERY * count + REPORT_EVERY / 2)

    async with anyio.create_task_group() as tg:
        tg.start_soon(report_changes, lambda: now, lambda: hosts)
        await rounds(2)
        assert a.sent == []  # nothing to report yet: an idle core sends nothing
        now = statistics(queued=2, starting=1, hits=0)
        await rounds(3)
        assert a.sent == [(2, 1, 0)]  # once, however many rounds see it unchanged
        a.broken = True
        now = statistics(queued=1, starting=1, hits=1)
        await rounds(1)
        a.broken = False
        await rounds(1)
        assert a.sent == [(2, 1, 0), (1, 1, 1)]  # a failed report is tried again
        hosts[0] = Host("a", old)  # the link was made again: the agent knows nothing of us
        await rounds(1)
        assert old.sent == [(1, 1, 1)]
        tg.cancel_scope.cancel()
    assert b.sent == []  # its agent does not announce "top"
