"""Cleanup that must finish: deleting sandboxes when the caller may be cancelled.

Rules:
- A cleanup is shielded (a cancelled caller must not leave containers behind) unless told not
  to be, and bounded by `CLEANUP_TIMEOUT` in all (a hung engine must not hang a cancel or an
  exit). What it leaves is deleted by the cluster when it exits (or reaped by the agents'
  leases).
- Failures are logged, one line each, and never raised: the caller is already on its way out.
- Read `CLEANUP_TIMEOUT` as ``_cleanup.CLEANUP_TIMEOUT`` at the moment of use, so that tests can
  shorten it in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import anyio

from ._errors import RockError

if TYPE_CHECKING:
    from ._attach import PoolSite

log = logging.getLogger("rock_core")

CLEANUP_TIMEOUT = 60.0  # seconds a shielded cleanup (deletes, a reset's restart) may take
DELETE_CONCURRENCY = 16  # deletes in flight at most when many go at once


async def delete_quietly(
    cluster: PoolSite,
    sandbox_ids: Iterable[str],
    *,
    who: str,
    limit: int = DELETE_CONCURRENCY,
    shield: bool = True,
) -> None:
    """Delete sandboxes of `cluster`, `limit` at once, logging (not raising) each failure.

    Shielded unless `shield` is false, and bounded by `CLEANUP_TIMEOUT` in all; what is not
    deleted by then is left to the cluster, which deletes it when it exits. `who` names the
    caller in the log.
    """
    limiter = anyio.CapacityLimiter(limit)

    async def delete(sandbox_id: str) -> None:
        async with limiter:
            try:
                await cluster.delete_sandbox(sandbox_id)
            except RockError as exc:
                log.warning("%s: could not delete sandbox %s: %s", who, sandbox_id, exc)

    timeout = CLEANUP_TIMEOUT
    with anyio.CancelScope(shield=shield), anyio.move_on_after(timeout) as bound:
        async with anyio.create_task_group() as tg:
            for sandbox_id in sandbox_ids:
                tg.start_soon(delete, sandbox_id)
    if bound.cancelled_caught:
        log.warning(
            "%s: deletes did not finish within %g s; the cluster deletes what is left when it "
            "exits",
            who,
            timeout,
        )


__all__ = ["CLEANUP_TIMEOUT", "DELETE_CONCURRENCY", "delete_quietly"]
