"""Warm pools: running sandboxes of one spec, made ahead so that an acquire takes microseconds.

Rules:
- A pool makes sandboxes of one spec, labelled ``rock.pool=NAME``, through its cluster like any
  create (placement, the per-host start cap, the queue). They are ordinary sandboxes of that
  cluster: deleted when it exits, reaped by the agents' leases when the program dies.
- `ready` members run and have never been handed out (or were reset); `in_flight` members are
  being made. `size = ready + in_flight` never exceeds `max_size`.
- Target: starts at `min_size`. Each miss raises it by one, up to `max_size` (demand outran the
  pool); each `shrink_after` seconds without a miss lowers it by one, down to `min_size`.
- Refill: while `size < target`, refills start, at most `refill_concurrency` at once, and only
  while no create waits in the cluster's queue and some host has a free start slot and room
  for the spec (`PoolSite.startable`): user creates go first, and refills take only start
  slots nobody waits for. A pool held back only by the cluster looks again when the
  cluster's capacity changes (`PoolSite.capacity_changed`), not by polling. A
  refill that still finds no room gives up after `refill_queue_timeout`. After a failed refill
  the next one waits (0.5 s, doubling up to 30 s; a success resets the wait). No refill starts
  within 50 ms of a hit, so that the caller's first commands run before the engine starts a
  container (on a small host the two compete for the same cores).
- Trim: ready members beyond the target that have been idle for `shrink_after` are deleted,
  oldest first.
- Acquire: the oldest ready member that still runs is handed out (a hit) with no await between
  choosing it and recording it as handed out, so no two acquires ever get the same member.
  Ready members found not running are discarded (deleted in the background). With none ready,
  a cold start of the pool's spec is handed out (a miss). Every member, hit or miss, went
  through `prepare`; a `prepare` that runs longer than `prepare_timeout` fails with `TimedOut`.
- Release: `reset=False` deletes the sandbox: nobody gets it again. `reset=True` restarts it
  (its processes and sessions end, its file system is kept), prepares it again and puts it
  back as ready if the pool is open and below `max_size`; otherwise it is deleted.
- Close: refilling stops (refills in flight are cancelled and their containers removed), and
  every member that is not handed out is deleted: ready ones, and discarded, trimmed or failed
  ones whose background delete had not finished. Handed-out members stay with their holders;
  releasing one later deletes it.
- Cleanup that must finish even when its caller is cancelled (deleting members, a reset) is
  shielded, and bounded by `CLEANUP_TIMEOUT`: a hung engine never hangs a cancel or an exit.
  What it leaves is deleted by the cluster when it exits (or reaped by the agents' leases).
- Layout: the decisions (refill, backoff, shrink, trim) are `_pool_policy.PoolPolicy`, plain
  code told events with `now`; `_pool_stock.PoolStock` performs its plans against the cluster
  (a `_attach.PoolSite`) and holds the ready members; `RecordPool` here hands members out and
  takes them back. Options are `_pool_options.PoolOptions`; bounded deletes are `_cleanup`'s.
  Time is read only through anyio (`anyio.current_time`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import msgspec

from . import _cleanup
from ._cleanup import CLEANUP_TIMEOUT, delete_quietly
from ._errors import BadRequest, RockError, SandboxFailed, TimedOut
from ._options import whole
from ._pool_options import (
    DEFAULT_PREPARE_TIMEOUT,
    DEFAULT_REFILL_CONCURRENCY,
    POOL_LABEL,
    PoolOptions,
    Prepare,
    default_pool_name,
    options_of,
)
from ._pool_stock import PoolStock
from ._protocol import SandboxSpec
from ._states import SandboxState
from ._statistics import PoolStatistics

if TYPE_CHECKING:
    from ._attach import PoolSite
    from ._records import SandboxRecord

RESET_STOP_TIMEOUT = 1.0  # seconds a reset gives processes to exit before they are killed
PRUNE_AT_LEAST = 64  # hand-outs counted before deleted ones are first looked for
_S = SandboxState


class RecordPool:
    """A warm pool of one sandbox spec in a cluster, handing out `SandboxRecord`s; see the
    module's rules. (`rock_sdk.Pool` wraps it and hands out `Sandbox` objects.)

    Make one with `open_pool`, which takes a `PoolOptions` and keyword changes to it, as this
    constructor does. Every method is safe to call from many tasks at once.
    """

    def __init__(
        self,
        cluster: PoolSite,
        spec: SandboxSpec,
        options: PoolOptions | None = None,
        **changes: Any,
    ) -> None:
        options = options_of(options, changes)
        name = options.pool_name(spec)
        self.cluster = cluster
        self.options = options
        self.name = name
        self.spec = msgspec.structs.replace(spec, labels={**spec.labels, POOL_LABEL: name})
        self.min_size = options.min_size
        self.max_size = options.most
        self._stock = PoolStock(cluster, self.spec, name, options)
        self._out: dict[str, SandboxRecord] = {}  # handed out
        self._prune_at = PRUNE_AT_LEAST  # `_hand_out` forgets deleted hand-outs at this size

    # ------------------------------------------------------------------ public

    @property
    def closed(self) -> bool:
        """True once the pool is closed (or its cluster is closing)."""
        return self._stock.policy.closed

    async def acquire(self) -> SandboxRecord:
        """A running sandbox that is now the caller's: a ready member, else a cold start."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        started = anyio.current_time()
        record = self._stock.take()
        if record is not None:
            self._hand_out(record)
            self.cluster.create_times.observe("warm", anyio.current_time() - started)
            # The member is the caller's from here on: a cancellation now must not lose it.
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return record
        record = await self._cold_start()
        self.cluster.create_times.observe("cold", anyio.current_time() - started)
        return record

    async def release(self, sandbox_id: str, *, reset: bool = False) -> None:
        """Give back a sandbox `acquire` handed out: deleted, or with `reset` restarted and
        put back for the next acquire (see the module's rules)."""
        record = self._out.pop(sandbox_id, None)
        if record is None:
            with contextlib.suppress(RockError):
                known = self.cluster.record(sandbox_id)
                if known.state is _S.DELETED and known.spec.labels.get(POOL_LABEL) == self.name:
                    return  # deleted already (by its holder, or by `rock pool rm`)
            raise BadRequest(
                f"sandbox {sandbox_id} is not handed out by pool {self.name!r} "
                "(never acquired from it, or released already)"
            )
        # Shielded: a cancelled caller must not leave the sandbox half reset or undeleted.
        # Bounded: a hung engine or `prepare` must not hang the caller's cancel.
        timeout = _cleanup.CLEANUP_TIMEOUT
        with anyio.CancelScope(shield=True):
            if reset and await self._reset(record):
                return
            self._stock.wake()
            if record.state is _S.DELETED:
                return
            with anyio.move_on_after(timeout) as bound:
                await self.cluster.delete_sandbox(sandbox_id)
        if bound.cancelled_caught:
            await anyio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller sees its cancel
            raise TimedOut(
                f"pool {self.name!r}: deleting sandbox {sandbox_id} did not finish within "
                f"{timeout:g} s; the cluster deletes it when it exits",
                sandbox_id=sandbox_id,
            )

    async def wait_ready(self, count: int | None = None) -> None:
        """Wait until `count` members (default `min_size`) are ready.

        A `count` above the current target raises the target to it (like misses do). Raises
        `BadRequest` if `count` exceeds `max_size` or the pool closes, and the error of the
        first refill that fails while it waits.
        """
        want = self.min_size if count is None else whole(count, "count", 0)
        if want > self.max_size:
            raise BadRequest(
                f"pool {self.name!r} holds at most {self.max_size} sandboxes; cannot wait "
                f"for {want} ready"
            )
        stock = self._stock
        if stock.policy.want(want, anyio.current_time()):
            stock.wake()
        failures = stock.failures
        while len(stock.policy.ready) < want:
            self._check_open()
            if stock.failures > failures and stock.last_exception is not None:
                exc = stock.last_exception
                if isinstance(exc, RockError):
                    raise type(exc)(
                        f"pool {self.name!r} could not refill: {exc.message}", **exc.details
                    ) from exc
                raise SandboxFailed(
                    f"pool {self.name!r} could not refill: prepare raised "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            await stock.changed.wait()
        await anyio.lowlevel.checkpoint()

    def statistics(self) -> PoolStatistics:
        """Size, ready, in flight, handed out, hits, misses, refill rate, failures."""
        stock = self._stock
        policy = stock.policy
        return PoolStatistics(
            name=self.name,
            image=self.spec.image,
            min_size=self.min_size,
            max_size=self.max_size,
            target=policy.target,
            size=policy.size,
            ready=len(policy.ready),
            in_flight=policy.in_flight,
            handed_out=sum(r.state is not _S.DELETED for r in self._out.values()),
            hits=policy.hits,
            misses=policy.misses,
            refills=policy.refills,
            refill_rate=policy.refill_rate(anyio.current_time()),
            failures=stock.failures,
            resets=policy.resets,
            discarded=policy.discarded,
            last_error=stock.last_error,
        )

    async def aclose(self) -> None:
        """Close the pool: stop refilling and delete every member that is not handed out
        (see the module's rules)."""
        with anyio.CancelScope(shield=True):
            await self.halt()
            await delete_quietly(self.cluster, self._stock.idle(), who=f"pool {self.name}")
            self.cluster.detach(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._stock.policy.ready)} ready"
        return f"<RecordPool {self.name} {self.spec.image} {state}>"

    async def halt(self) -> None:
        """Stop refilling (refills and background deletes in flight are cancelled) and refuse
        acquires; the members stay. The cluster halts its pools before it deletes its
        sandboxes; `aclose` halts before it deletes the members."""
        await self._stock.halt()

    # ------------------------------------------------------------------ inside

    async def _open(self) -> None:
        await self.cluster.attach(self, self._stock.run)

    def _check_open(self) -> None:
        if self.closed:
            raise BadRequest(f"pool {self.name!r} is closed")

    async def _cold_start(self) -> SandboxRecord:
        self._stock.policy.miss(anyio.current_time())
        self._stock.wake()
        record = await self.cluster.create_sandbox(self.spec)
        try:
            await self._stock.prepare(record)
        except BaseException:
            await delete_quietly(self.cluster, [record.sandbox_id], who=f"pool {self.name}")
            raise
        self._hand_out(record)
        return record

    def _hand_out(self, record: SandboxRecord) -> None:
        """Count `record` as the caller's; forget hand-outs their holders deleted meanwhile
        (looked for once the list has doubled, so each hand-out costs O(1) on average)."""
        if len(self._out) >= self._prune_at:
            for sandbox_id in [i for i, r in self._out.items() if r.state is _S.DELETED]:
                del self._out[sandbox_id]  # deleted by its holder: nothing to give back
            self._prune_at = max(PRUNE_AT_LEAST, 2 * len(self._out))
        self._out[record.sandbox_id] = record

    async def _reset(self, record: SandboxRecord) -> bool:
        """Restart a released member and put it back; False if it should be deleted."""
        stock = self._stock
        if not stock.policy.room_for_reset() or record.state is not _S.RUNNING:
            return False
        timeout = _cleanup.CLEANUP_TIMEOUT
        try:
            with anyio.move_on_after(timeout) as bound:
                await self.cluster.stop_sandbox(record.sandbox_id, timeout=RESET_STOP_TIMEOUT)
                await self.cluster.start_sandbox(record.sandbox_id)
            if bound.cancelled_caught:
                raise TimedOut(
                    f"restarting sandbox {record.sandbox_id} in pool {self.name!r} did not "
                    f"finish within {timeout:g} s",
                    sandbox_id=record.sandbox_id,
                )
            await stock.prepare(record)
        except Exception as exc:  # a RockError, or whatever the caller's `prepare` raised
            stock.failed(f"reset of {record.sandbox_id}", exc)
            return False
        return stock.put_back(record)


@asynccontextmanager
async def open_pool(
    cluster: PoolSite,
    spec: SandboxSpec,
    options: PoolOptions | None = None,
    **changes: Any,
) -> AsyncIterator[RecordPool]:
    """Open a warm pool of `spec` in `cluster` (refilled in the cluster's task group); on exit
    close it: refilling stops and its idle members are deleted.

    `options` (default `PoolOptions()`) with keyword `changes` to it, e.g.
    ``open_pool(cluster, spec, min_size=8, prepare=install)``; `PoolOptions` documents each.
    """
    pool = RecordPool(cluster, spec, options, **changes)
    await pool._open()
    try:
        yield pool
    finally:
        await pool.aclose()


__all__ = [
    "CLEANUP_TIMEOUT",
    "DEFAULT_PREPARE_TIMEOUT",
    "DEFAULT_REFILL_CONCURRENCY",
    "POOL_LABEL",
    "PoolOptions",
    "Prepare",
    "RecordPool",
    "default_pool_name",
    "delete_quietly",
    "open_pool",
]
