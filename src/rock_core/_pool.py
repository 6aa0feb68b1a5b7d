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
  for the spec: user creates go first, and refills take only start slots nobody waits for. A
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
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.lowlevel
import msgspec

from ._errors import BadRequest, RockError, SandboxFailed, TimedOut
from ._options import seconds, whole
from ._protocol import SandboxSpec
from ._scheduler import Demand
from ._states import SandboxState
from ._statistics import PoolStatistics

if TYPE_CHECKING:
    from ._attach import PoolSite
    from ._records import SandboxRecord

log = logging.getLogger("rock_core")

POOL_LABEL = "rock.pool"
DEFAULT_REFILL_CONCURRENCY = 4
BACKOFF_BASE = 0.5  # seconds before retrying after a failed refill; doubles up to BACKOFF_MAX
BACKOFF_MAX = 30.0
CHECK_INTERVAL = 1.0  # seconds between looks for dead members when nothing else happens
BLOCKED_POLL = 0.05  # how often to look again while the cluster has no room for a refill
RATE_WINDOW = 60.0  # seconds over which `refill_rate` is measured
REFILL_DELAY = 0.05  # seconds a refill waits after a hit: the caller's first commands go first
RESET_STOP_TIMEOUT = 1.0  # seconds a reset gives processes to exit before they are killed
CLEANUP_TIMEOUT = 60.0  # seconds a shielded cleanup (deletes, a reset's restart) may take
DEFAULT_PREPARE_TIMEOUT = 300.0  # seconds `prepare` may take on one member
DELETE_CONCURRENCY = 16  # deletes in flight at most when many go at once
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_S = SandboxState

Prepare = Callable[["SandboxRecord"], Awaitable[None]]
"""Run on every member before it is handed out (after a reset too); an error discards it."""


class _Member:
    __slots__ = ("record", "since")

    def __init__(self, record: SandboxRecord, since: float) -> None:
        self.record = record
        self.since = since  # when it became ready


def default_pool_name(spec: SandboxSpec) -> str:
    """A stable name for a pool of `spec`: the image made label-safe plus a digest of the spec."""
    digest = hashlib.sha256(msgspec.msgpack.encode(spec)).hexdigest()[:6]
    image = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.image).strip("-_.") or "pool"
    return f"{image[:48]}-{digest}"


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

    Make one with `open_pool`. Every method is safe to call from many tasks at once.
    """

    def __init__(
        self,
        cluster: PoolSite,
        spec: SandboxSpec,
        *,
        name: str | None = None,
        min_size: int = 1,
        max_size: int | None = None,
        refill_concurrency: int = DEFAULT_REFILL_CONCURRENCY,
        refill_queue_timeout: float = 2.0,
        shrink_after: float = 60.0,
        prepare: Prepare | None = None,
        prepare_timeout: float = DEFAULT_PREPARE_TIMEOUT,
    ) -> None:
        min_size = whole(min_size, "min_size", 0)
        max_size = max(min_size, 1) if max_size is None else whole(max_size, "max_size", 1)
        if max_size < max(min_size, 1):
            raise BadRequest(
                f"max_size must be >= min_size and >= 1, got min_size={min_size}, "
                f"max_size={max_size}"
            )
        whole(refill_concurrency, "refill_concurrency", 1)
        for what, value in (
            ("refill_queue_timeout", refill_queue_timeout),
            ("shrink_after", shrink_after),
            ("prepare_timeout", prepare_timeout),
        ):
            seconds(value, what)
        if prepare is not None and not callable(prepare):
            raise BadRequest(f"prepare must be an async callable or None, got {prepare!r}")
        name = default_pool_name(spec) if name is None else name
        if not _NAME.match(name):
            raise BadRequest(
                f"pool name {name!r} must be 1-63 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        labelled = spec.labels.get(POOL_LABEL)
        if labelled is not None and labelled != name:
            raise BadRequest(
                f"the spec's label {POOL_LABEL}={labelled!r} differs from the pool's name {name!r}"
            )
        self.cluster = cluster
        self.name = name
        self.spec = msgspec.structs.replace(spec, labels={**spec.labels, POOL_LABEL: name})
        self.min_size = min_size
        self.max_size = max_size
        self.refill_concurrency = refill_concurrency
        self.refill_queue_timeout = refill_queue_timeout
        self.shrink_after = shrink_after
        self.prepare_timeout = prepare_timeout
        self._prepare = prepare
        self._ready: deque[_Member] = deque()
        self._out: dict[str, SandboxRecord] = {}
        # Members to delete: each stays here until its delete is done, so that `aclose` deletes
        # those whose background delete was cut short.
        self._doomed: set[str] = set()
        self._deleting: set[str] = set()  # doomed members whose background delete runs now
        self._in_flight = 0
        self._target = min_size
        self._target_since = time.monotonic()  # the last miss, or the last shrink step
        self._opened = time.monotonic()
        self._refill_times: deque[float] = deque()
        self._hits = self._misses = self._refills = self._failures = 0
        self._resets = self._discarded = 0
        self._failures_in_row = 0
        self._retry_at = 0.0
        self._hit_at = -REFILL_DELAY
        self._last_error = ""
        self._last_exception: Exception | None = None
        self._wakeup = anyio.Event()  # wakes the refill loop
        self._changed = anyio.Event()  # wakes `wait_ready`
        self._closed = False
        self._scope: anyio.CancelScope | None = None
        self._stopped = anyio.Event()

    # ------------------------------------------------------------------ public

    @property
    def closed(self) -> bool:
        """True once the pool is closed (or its cluster is closing)."""
        return self._closed

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
        if want > self._target:
            self._target = want
            self._target_since = time.monotonic()
            self._wake()
        failures = self._failures
        while len(self._ready) < want:
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
        now = time.monotonic()
        while self._refill_times and self._refill_times[0] < now - RATE_WINDOW:
            self._refill_times.popleft()
        window = min(RATE_WINDOW, max(now - self._opened, 1e-3))
        handed_out = sum(1 for r in self._out.values() if r.state is not _S.DELETED)
        return PoolStatistics(
            name=self.name,
            image=self.spec.image,
            min_size=self.min_size,
            max_size=self.max_size,
            target=self._target,
            size=len(self._ready) + self._in_flight,
            ready=len(self._ready),
            in_flight=self._in_flight,
            handed_out=handed_out,
            hits=self._hits,
            misses=self._misses,
            refills=self._refills,
            refill_rate=len(self._refill_times) / window,
            failures=self._failures,
            resets=self._resets,
            discarded=self._discarded,
            last_error=self._last_error,
        )

    async def aclose(self) -> None:
        """Close the pool: stop refilling and delete every member that is not handed out
        (see the module's rules)."""
        with anyio.CancelScope(shield=True):
            await self.halt()
            idle = [m.record.sandbox_id for m in self._ready] + sorted(self._doomed)
            self._ready.clear()
            self._doomed.clear()
            await delete_quietly(self.cluster, idle, who=f"pool {self.name}")
            self.cluster.detach(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._ready)} ready"
        return f"<RecordPool {self.name} {self.spec.image} {state}>"

    async def halt(self) -> None:
        """Stop refilling (refills and background deletes in flight are cancelled) and refuse
        acquires; the members stay. The cluster halts its pools before it deletes its
        sandboxes; `aclose` halts before it deletes the members."""
        self._closed = True
        self._notify()
        if self._scope is not None:
            self._scope.cancel()
            await self._stopped.wait()

    # ------------------------------------------------------------------ hand-outs

    def _check_open(self) -> None:
        if self._closed:
            raise BadRequest(f"pool {self.name!r} is closed")

    def _take(self) -> SandboxRecord | None:
        """Hand out the oldest ready member that still runs (no await: nobody else can)."""
        while self._ready:
            record = self._ready.popleft().record
            if record.state is _S.RUNNING:
                self._out[record.sandbox_id] = record
                self._hits += 1
                self._hit_at = time.monotonic()
                self._wake()
                return record
            self._discard(record)
        return None

    async def _cold_start(self) -> SandboxRecord:
        self._misses += 1
        if self._target < self.max_size:
            self._target += 1
        self._target_since = time.monotonic()
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
        if not self._room_for_reset() or record.state is not _S.RUNNING:
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
        if not self._room_for_reset():
            return False
        self._ready.append(_Member(record, time.monotonic()))
        self._resets += 1
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

    def _room_for_reset(self) -> bool:
        return not self._closed and len(self._ready) + self._in_flight < self.max_size

    def _discard(self, record: SandboxRecord) -> None:
        self._discarded += 1
        self._doom(record)
        log.info("pool %s: member %s is %s; discarded", self.name, record.sandbox_id, record.state)

    # ------------------------------------------------------------------ refill loop

    async def _open(self) -> None:
        await self.cluster.attach(self, self._run)

    async def _run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            with anyio.CancelScope() as self._scope:
                async with anyio.create_task_group() as workers:
                    task_status.started()
                    while True:
                        self._wakeup = anyio.Event()
                        now = time.monotonic()
                        self._tidy(now)
                        for sandbox_id in sorted(self._doomed - self._deleting):
                            self._deleting.add(sandbox_id)
                            workers.start_soon(self._delete_doomed, sandbox_id)
                        blocker = self._refill_blocker(now)
                        if blocker is None:
                            free = self._free_starts()
                            while blocker is None and free > 0:
                                self._in_flight += 1
                                workers.start_soon(self._refill_one)
                                free -= 1
                                blocker = self._refill_blocker(now)
                            blocker = blocker or "cluster"
                        with anyio.move_on_after(self._next_look(now, blocker)):
                            await self._wakeup.wait()
        finally:
            self._stopped.set()

    def _tidy(self, now: float) -> None:
        """Drop dead ready members, forget deleted hand-outs, shrink the target, trim."""
        if any(m.record.state is not _S.RUNNING for m in self._ready):
            for member in [m for m in self._ready if m.record.state is not _S.RUNNING]:
                self._ready.remove(member)
                self._discard(member.record)
        for sandbox_id in [i for i, r in self._out.items() if r.state is _S.DELETED]:
            del self._out[sandbox_id]
        if self._target > self.min_size and now - self._target_since >= self.shrink_after:
            self._target -= 1
            self._target_since = now
        while (
            self._ready
            and len(self._ready) + self._in_flight > self._target
            and now - self._ready[0].since >= self.shrink_after
        ):
            self._doom(self._ready.popleft().record)

    def _refill_blocker(self, now: float) -> str | None:
        """Why the pool itself lets no refill start now (None: it would let one)."""
        if self._closed or len(self._ready) + self._in_flight >= self._target:
            return "full"
        if self._in_flight >= self.refill_concurrency:
            return "busy"
        if now < self._retry_at:
            return "backoff"
        if now < self._hit_at + REFILL_DELAY:
            return "after a hit"
        return None

    def _free_starts(self) -> int:
        """How many creates of the spec the hosts could start right now (see `PoolSite`)."""
        spec = self.spec
        return self.cluster.startable(Demand(spec.cpus, spec.memory, spec.image))

    def _next_look(self, now: float, blocker: str) -> float:
        """Seconds until the loop should look again if nothing wakes it."""
        delay = CHECK_INTERVAL
        if blocker == "backoff":
            delay = min(delay, self._retry_at - now)
        elif blocker == "after a hit":
            delay = min(delay, self._hit_at + REFILL_DELAY - now)
        elif blocker == "cluster":  # no start slot or room free: the scheduler has no signal
            delay = BLOCKED_POLL
        if self._target > self.min_size:
            delay = min(delay, self._target_since + self.shrink_after - now)
        if self._ready and len(self._ready) > self._target:
            delay = min(delay, self._ready[0].since + self.shrink_after - now)
        return max(delay, 0.0)

    async def _refill_one(self) -> None:
        record: SandboxRecord | None = None
        made = False
        try:
            record = await self.cluster.create_sandbox(
                self.spec, queue_timeout=self.refill_queue_timeout
            )
            await self._run_prepare(record)
            made = True
        except Exception as exc:  # a RockError, or whatever the caller's `prepare` raised
            self._failed("refill", exc)
            self._failures_in_row += 1
            backoff = BACKOFF_BASE * 2 ** min(self._failures_in_row - 1, 10)
            self._retry_at = time.monotonic() + min(BACKOFF_MAX, backoff)
        finally:
            self._in_flight -= 1
            if record is not None and not made:
                # Failed or cancelled (the pool halts): deleted in the background, by `aclose`,
                # or by the cluster when it exits; never awaited here, so a halt never waits.
                self._doom(record)
            self._wake()
        if record is None or not made:
            return
        now = time.monotonic()
        self._ready.append(_Member(record, now))
        self._refills += 1
        self._refill_times.append(now)
        self._failures_in_row = 0
        self._retry_at = 0.0
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

    def _doom(self, record: SandboxRecord) -> None:
        """Have the refill loop delete `record` in the background (or `aclose`, if it closes)."""
        self._doomed.add(record.sandbox_id)
        self._wake()

    async def _delete_doomed(self, sandbox_id: str) -> None:
        try:
            await delete_quietly(self.cluster, [sandbox_id], who=f"pool {self.name}", shield=False)
        finally:
            self._deleting.discard(sandbox_id)
        self._doomed.discard(sandbox_id)  # not reached if cancelled: `aclose` deletes it then

    def _wake(self) -> None:
        self._wakeup.set()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


@asynccontextmanager
async def open_pool(
    cluster: PoolSite,
    spec: SandboxSpec,
    *,
    min_size: int = 1,
    max_size: int | None = None,
    name: str | None = None,
    refill_concurrency: int = DEFAULT_REFILL_CONCURRENCY,
    refill_queue_timeout: float = 2.0,
    shrink_after: float = 60.0,
    prepare: Prepare | None = None,
    prepare_timeout: float = DEFAULT_PREPARE_TIMEOUT,
) -> AsyncIterator[RecordPool]:
    """Open a warm pool of `spec` in `cluster` (refilled in the cluster's task group); on exit
    close it: refilling stops and its idle members are deleted.

    - `min_size`: members kept ready; `max_size` (default `min_size`, at least 1): the most the
      pool holds (ready and being made) when misses have raised its target.
    - `name`: labels members ``rock.pool=NAME`` (default: the image and a digest of the spec);
      unique among the cluster's open pools.
    - `refill_concurrency`: refills in flight at most; `refill_queue_timeout`: seconds a refill
      waits for room before it gives up; `shrink_after`: seconds without a miss before the
      target drops by one and idle members beyond it are deleted.
    - `prepare`: awaited with every member before it is handed out (after a reset too); one
      that runs longer than `prepare_timeout` seconds fails with `TimedOut` (and the member
      is deleted).
    """
    pool = RecordPool(
        cluster,
        spec,
        name=name,
        min_size=min_size,
        max_size=max_size,
        refill_concurrency=refill_concurrency,
        refill_queue_timeout=refill_queue_timeout,
        shrink_after=shrink_after,
        prepare=prepare,
        prepare_timeout=prepare_timeout,
    )
    await pool._open()
    try:
        yield pool
    finally:
        await pool.aclose()


# The class's old name, kept only because `_cluster.py` still imports it for an annotation.

__all__ = [
    "POOL_LABEL",
    "Prepare",
    "RecordPool",
    "default_pool_name",
    "delete_quietly",
    "open_pool",
]
