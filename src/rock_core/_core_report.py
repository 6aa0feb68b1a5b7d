"""What a core tells its agents for the live view (`rock top`): its queue and its pools.

Rules:
- Queue depth and pool hits live in the core that owns them (a trainer's), not in the
  program that shows them, so each core reports them to the agents it uses, and an agent's
  host view carries them (`ReadHostView`; the agent keeps the latest report per connection).
- `core_reports` decides, as plain code over the cluster's statistics: every host gets the
  core's queue depth (a queued create waits for room on any host), its own starts in flight,
  and every open pool.
- `report_changes` performs it: once every `REPORT_EVERY` seconds it sends a host its report
  only if it differs from the last one sent on that same connection (a new connection starts
  from "nothing to report", so a core with no queue and no pool sends nothing), and only to an
  agent that announced "top". A report that fails is tried again the next round; it never
  touches the scheduler and never ends the cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import anyio

from ._connection import AgentConnection
from ._errors import RockError
from ._messages import Done
from ._messages_top import CoreReport, PoolView
from ._records import Host
from ._statistics import ClusterStatistics

log = logging.getLogger("rock_core")

REPORT_EVERY = 1.0  # seconds between two looks for a change to report
REPORT_TIMEOUT = 10.0  # seconds one report may take before the next round tries again
CAPABILITY = "top"

Key = tuple[int, int, tuple[tuple[object, ...], ...]]


def core_reports(stats: ClusterStatistics) -> dict[str, CoreReport]:
    """The report for each host of `stats`, by host id."""
    pools = [
        PoolView(
            name=p.name,
            image=p.image,
            size=p.size,
            ready=p.ready,
            target=p.target,
            handed_out=p.handed_out,
            hits=p.hits,
            misses=p.misses,
        )
        for p in stats.pools
    ]
    return {
        host.host_id: CoreReport(queued=stats.queue_depth, starting=host.starting, pools=pools)
        for host in stats.hosts
    }


def _key(report: CoreReport) -> Key:
    """What a report says (its request id aside)."""
    pools = tuple(
        (p.name, p.image, p.size, p.ready, p.target, p.handed_out, p.hits, p.misses)
        for p in report.pools
    )
    return (report.queued, report.starting, pools)


_NOTHING = _key(CoreReport())


async def report_changes(
    statistics: Callable[[], ClusterStatistics], hosts: Callable[[], Iterable[Host]]
) -> None:
    """Send each host its report when it changed (see the module's rules); runs until
    cancelled."""
    sent: dict[str, tuple[AgentConnection, Key]] = {}

    async def send(host_id: str, conn: AgentConnection, report: CoreReport) -> None:
        key = _key(report)
        with anyio.move_on_after(REPORT_TIMEOUT):
            try:
                await conn.call(report, Done)
            except RockError as exc:
                log.debug("could not report to host %s: %s", host_id, exc)
                return
            sent[host_id] = (conn, key)

    while True:
        await anyio.sleep(REPORT_EVERY)
        reports = core_reports(statistics())
        async with anyio.create_task_group() as tg:
            for host in hosts():
                conn = host.connection
                if conn is None or conn.closed or CAPABILITY not in conn.welcome.capabilities:
                    continue
                report = reports.get(host.host_id, CoreReport())
                last_conn, last_key = sent.get(host.host_id, (conn, _NOTHING))
                if last_conn is not conn:
                    last_key = _NOTHING  # a new connection has been told nothing yet
                if last_key == _key(report):
                    continue
                tg.start_soon(send, host.host_id, conn, report)


__all__ = ["REPORT_EVERY", "core_reports", "report_changes"]
