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
  code told events with `now`; `RecordPool` here is its driver: it performs the policy's plans
  against the cluster (a `_attach.PoolSite`), waits on the cluster's `capacity_changed` event
  and the plan's `wake_at`, and keeps the records. Options are `_pool_options.PoolOptions`.
  Time is read only through anyio (`anyio.current_time`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel
import msgspec

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
from ._pool_policy import PoolPolicy
from ._protocol import SandboxSpec
from ._scheduler import Demand
from ._states import SandboxState
from ._statistics import PoolStatistics

if TYPE_CHECKING:
    from ._attach import PoolSite
    from ._records import SandboxRecord

log = logging.getLogger("rock_core")

RESET_STOP_TIMEOUT = 1.0  # seconds a reset gives processes to exit before they are killed
CLEANUP_TIMEOUT = 60.0  # seconds a shielded cleanup (deletes, a reset's restart) may take
DELETE_CONCURRENCY = 16  # deletes in flight at most when many go at once
_S = SandboxState


async def delete_quietly(
    cluster: PoolSite,
    sandbox_ids: Iterable[str],
    *,
    who: str,
    limit: int = DELETE_CONCURRENCY,
    shield: bool = True,
) -> None:
    """Delete sandboxes of `cluster`, `limit` at once, logging (not raising) each failure.

    Shielded unless `shield` is false (a cancelled caller must not leave containers behind),
    and bounded by `CLEANUP_TIMEOUT` in all (a hung engine must not hang a cancel or an exit).
    What is not deleted by then is left to the cluster, which deletes it when it exits. `who`
    names the caller in the log.
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
        self.refill_concurrency = options.refill_concurrency
        self.refill_queue_timeout = options.refill_queue_timeout
        self.shrink_after = options.shrink_after
        self.prepare_timeout = options.prepare_timeout
        self._prepare = options.prepare
        self._policy = PoolPolicy(
            min_size=self.min_size,
            max_size=self.max_size,
            refill_concurrency=self.refill_concurrency,
            shrink_after=self.shrink_after,
            now=anyio.current_time(),
        )
        self._members: dict[str, SandboxRecord] = {}  # the ready members' records
        self._out: dict[str, SandboxRecord] = {}  # handed out
        self._failures = 0
        self._last_error = ""
        self._last_exception: Exception | None = None
        self._wants_room = False  # the last plan waits for the cluster's capacity to change
        self._wakeup = anyio.Event()  # wakes the refill loop
        self._changed = anyio.Event()  # wakes `wait_ready`
        self._scope: anyio.CancelScope | None = None
        self._stopped = anyio.Event()

    # ------------------------------------------------------------------ public

    @property
    def closed(self) -> bool:
        """True once the pool is closed (or its cluster is closing)."""
        return self._policy.closed

    async def acquire(self) -> SandboxRecord:
        """A running sandbox that is now the caller's: a ready member, else a cold start."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        record = self._take()
        if record is not None:
            # The member is the caller's from here on: a cancellation now must not lose it.
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return record
        return await self._cold_start()

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
        with anyio.CancelScope(shield=True):
            if reset and await self._reset(record):
                return
            self._wake()
            if record.state is _S.DELETED:
                return
            with anyio.move_on_after(CLEANUP_TIMEOUT) as bound:
                await self.cluster.delete_sandbox(sandbox_id)
        if bound.cancelled_caught:
            await anyio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller sees its cancel
            raise TimedOut(
                f"pool {self.name!r}: deleting sandbox {sandbox_id} did not finish within "
                f"{CLEANUP_TIMEOUT:g} s; the cluster deletes it when it exits",
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
        if self._policy.want(want, anyio.current_time()):
            self._wake()
        failures = self._failures
        while len(self._policy.ready) < want:
            self._check_open()
            if self._failures > failures and self._last_exception is not None:
                exc = self._last_exception
                if isinstance(exc, RockError):
                    raise type(exc)(
                        f"pool {self.name!r} could not refill: {exc.message}", **exc.details
                    ) from exc
                raise SandboxFailed(
                    f"pool {self.name!r} could not refill: prepare raised "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            await self._changed.wait()
        await anyio.lowlevel.checkpoint()

    def statistics(self) -> PoolStatistics:
        """Size, ready, in flight, handed out, hits, misses, refill rate, failures."""
        policy = self._policy
        handed_out = sum(1 for r in self._out.values() if r.state is not _S.DELETED)
        return PoolStatistics(
            name=self.name,
            image=self.spec.image,
            min_size=self.min_size,
            max_size=self.max_size,
            target=policy.target,
            size=policy.size,
            ready=len(policy.ready),
            in_flight=policy.in_flight,
            handed_out=handed_out,
            hits=policy.hits,
            misses=policy.misses,
            refills=policy.refills,
            refill_rate=policy.refill_rate(anyio.current_time()),
            failures=self._failures,
            resets=policy.resets,
            discarded=policy.discarded,
            last_error=self._last_error,
        )

    async def aclose(self) -> None:
        """Close the pool: stop refilling and delete every member that is not handed out
        (see the module's rules)."""
        with anyio.CancelScope(shield=True):
            await self.halt()
            idle = self._policy.idle()
            self._members.clear()
            await delete_quietly(self.cluster, idle, who=f"pool {self.name}")
            self.cluster.detach(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._policy.ready)} ready"
        return f"<RecordPool {self.name} {self.spec.image} {state}>"

    async def halt(self) -> None:
        """Stop refilling (refills and background deletes in flight are cancelled) and refuse
        acquires; the members stay. The cluster halts its pools before it deletes its
        sandboxes; `aclose` halts before it deletes the members."""
        self._policy.close()
        self._notify()
        if self._scope is not None:
            self._scope.cancel()
            await self._stopped.wait()

    # ------------------------------------------------------------------ hand-outs

    def _check_open(self) -> None:
        if self.closed:
            raise BadRequest(f"pool {self.name!r} is closed")

    def _take(self) -> SandboxRecord | None:
        """Hand out the oldest ready member that still runs (no await: nobody else can)."""
        policy = self._policy
        while (sandbox_id := policy.take()) is not None:
            record = self._members.pop(sandbox_id)
            if record.state is _S.RUNNING:
                self._out[sandbox_id] = record
                policy.hit(anyio.current_time())
                self._wake()
                return record
            policy.discard(sandbox_id)
            self._discarded(record)
        return None

    async def _cold_start(self) -> SandboxRecord:
        self._policy.miss(anyio.current_time())
        self._wake()
        record = await self.cluster.create_sandbox(self.spec)
        try:
            await self._run_prepare(record)
        except BaseException:
            await delete_quietly(self.cluster, [record.sandbox_id], who=f"pool {self.name}")
            raise
        self._out[record.sandbox_id] = record
        return record

    async def _reset(self, record: SandboxRecord) -> bool:
        """Restart a released member and put it back; False if it should be deleted."""
        if not self._policy.room_for_reset() or record.state is not _S.RUNNING:
            return False
        try:
            with anyio.move_on_after(CLEANUP_TIMEOUT) as bound:
                await self.cluster.stop_sandbox(record.sandbox_id, timeout=RESET_STOP_TIMEOUT)
                await self.cluster.start_sandbox(record.sandbox_id)
            if bound.cancelled_caught:
                raise TimedOut(
                    f"restarting sandbox {record.sandbox_id} in pool {self.name!r} did not "
                    f"finish within {CLEANUP_TIMEOUT:g} s",
                    sandbox_id=record.sandbox_id,
                )
            await self._run_prepare(record)
        except Exception as exc:  # a RockError, or whatever the caller's `prepare` raised
            self._failed(f"reset of {record.sandbox_id}", exc)
            return False
        if not self._policy.put_back(record.sandbox_id, anyio.current_time()):
            return False
        self._members[record.sandbox_id] = record
        self._notify()
        return True

    async def _run_prepare(self, record: SandboxRecord) -> None:
        """Await the caller's `prepare` on `record`, `TimedOut` after `prepare_timeout`."""
        if self._prepare is None:
            return
        with anyio.move_on_after(self.prepare_timeout) as bound:
            await self._prepare(record)
        if bound.cancelled_caught:
            raise TimedOut(
                f"prepare of sandbox {record.sandbox_id} in pool {self.name!r} did not finish "
                f"within {self.prepare_timeout:g} s",
                sandbox_id=record.sandbox_id,
            )

    def _discarded(self, record: SandboxRecord) -> None:
        self._wake()
        log.info("pool %s: member %s is %s; discarded", self.name, record.sandbox_id, record.state)

    # ------------------------------------------------------------------ refill loop

    async def _open(self) -> None:
        await self.cluster.attach(self, self._run)

    async def _run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        policy = self._policy
        try:
            with anyio.CancelScope() as self._scope:
                async with anyio.create_task_group() as workers:
                    workers.start_soon(self._watch_capacity)
                    task_status.started()
                    while True:
                        self._wakeup = anyio.Event()
                        self._tidy()
                        now = anyio.current_time()
                        free = self._free_starts() if policy.may_refill(now) else 0
                        plan = policy.plan(now, free)
                        for sandbox_id in plan.deletes:
                            self._members.pop(sandbox_id, None)  # trimmed members
                            workers.start_soon(self._delete_doomed, sandbox_id)
                        for _ in range(plan.refills):
                            workers.start_soon(self._refill_one)
                        self._wants_room = plan.wants_room
                        with anyio.CancelScope(deadline=plan.wake_at):
                            await self._wakeup.wait()
        finally:
            self._stopped.set()

    async def _watch_capacity(self) -> None:
        """Wake the refill loop when the cluster's room grows while it waits for room."""
        while True:
            await self.cluster.capacity_changed().wait()
            if self._wants_room:
                self._wake()

    def _tidy(self) -> None:
        """Discard ready members found not running; forget deleted hand-outs."""
        members = self._members
        if any(r.state is not _S.RUNNING for r in members.values()):
            for sandbox_id in self._policy.ready_ids():
                record = members[sandbox_id]
                if record.state is not _S.RUNNING:
                    del members[sandbox_id]
                    self._policy.died(sandbox_id)
                    self._discarded(record)
        for sandbox_id in [i for i, r in self._out.items() if r.state is _S.DELETED]:
            del self._out[sandbox_id]

    def _free_starts(self) -> int:
        """How many creates of the spec the hosts could start right now (see `PoolSite`)."""
        spec = self.spec
        return self.cluster.startable(Demand(spec.cpus, spec.memory, spec.image))

    async def _refill_one(self) -> None:
        policy = self._policy
        record: SandboxRecord | None = None
        try:
            record = await self.cluster.create_sandbox(
                self.spec, queue_timeout=self.refill_queue_timeout
            )
            await self._run_prepare(record)
        except Exception as exc:  # a RockError, or whatever the caller's `prepare` raised
            policy.refill_failed(anyio.current_time(), _id_of(record))
            self._failed("refill", exc)
            return
        except BaseException:
            # Cancelled (the pool halts): its sandbox is deleted in the background, by `aclose`,
            # or by the cluster when it exits; never awaited here, so a halt never waits.
            policy.refill_stopped(_id_of(record))
            raise
        finally:
            self._wake()
        policy.refilled(record.sandbox_id, anyio.current_time())
        self._members[record.sandbox_id] = record
        self._notify()

    def _failed(self, what: str, exc: Exception) -> None:
        self._failures += 1
        self._last_error = f"{what}: {type(exc).__name__}: {exc}"
        self._last_exception = exc
        self._notify()
        if isinstance(exc, RockError):
            log.warning("pool %s: %s", self.name, self._last_error)
        else:  # not ours: most likely a bug in the caller's `prepare`; keep its traceback
            log.error("pool %s: %s", self.name, self._last_error, exc_info=exc)

    async def _delete_doomed(self, sandbox_id: str) -> None:
        try:
            await delete_quietly(self.cluster, [sandbox_id], who=f"pool {self.name}", shield=False)
        except BaseException:
            self._policy.delete_stopped(sandbox_id)  # cancelled: `aclose` deletes it then
            raise
        self._policy.deleted(sandbox_id)

    def _wake(self) -> None:
        self._wakeup.set()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


def _id_of(record: SandboxRecord | None) -> str | None:
    return None if record is None else record.sandbox_id


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
