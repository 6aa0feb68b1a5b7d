"""A warm pool's stock: its ready members, and the background loop that refills, trims and
deletes them by performing `PoolPolicy`'s plans against the cluster.

Rules:
- The stock knows nothing of handed-out sandboxes: `take` gives a member away and forgets it,
  `put_back` takes one back (after a reset). The pool (`_pool.RecordPool`) keeps the rest.
- The loop plans again after every event that may change a decision (`wake`: a hit, a miss, a
  refill ended, a member doomed), at the plan's `wake_at`, and, while only the cluster's room
  holds refills back, when the cluster's capacity changes. It asks the cluster for room
  (`startable`) only when the policy would start a refill.
- Every background task (refills, deletes, the capacity watch) runs in the loop's task group:
  `halt` cancels them and returns once they stopped. A refill cancelled that way leaves its
  sandbox doomed, for `idle`; nothing on the way out awaits a delete.
- `failed` records the last failure (of a refill, or of a reset) and wakes `changed`'s waiters.
- Time is read through anyio only (`anyio.current_time`), and passed to the policy as `now`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from ._cleanup import delete_quietly
from ._errors import RockError, TimedOut
from ._pool_options import PoolOptions
from ._pool_policy import PoolPolicy
from ._protocol import SandboxSpec
from ._scheduler import Demand
from ._states import SandboxState

if TYPE_CHECKING:
    from ._attach import PoolSite
    from ._records import SandboxRecord

log = logging.getLogger("rock_core")

_S = SandboxState


class PoolStock:
    """The ready members of the pool `name` (a spec labelled for it) and their refill loop;
    see the module's rules. `members` holds the ready members' records by sandbox id."""

    def __init__(self, site: PoolSite, spec: SandboxSpec, name: str, options: PoolOptions) -> None:
        self.site = site
        self.spec = spec
        self.name = name
        self.options = options
        self.policy = PoolPolicy(
            min_size=options.min_size,
            max_size=options.most,
            refill_concurrency=options.refill_concurrency,
            shrink_after=options.shrink_after,
            now=anyio.current_time(),
        )
        self.members: dict[str, SandboxRecord] = {}
        self.failures = 0
        self.last_error = ""
        self.last_exception: Exception | None = None
        self._wants_room = False  # the last plan waits for the cluster's capacity to change
        self._wakeup = anyio.Event()  # wakes the loop
        self._changed = anyio.Event()  # set (and replaced) when members become ready or fail
        self._scope: anyio.CancelScope | None = None
        self._stopped = anyio.Event()

    # ------------------------------------------------------------------ for the pool

    @property
    def changed(self) -> anyio.Event:
        """Set the next time a member becomes ready, something fails, or the stock halts."""
        return self._changed

    def take(self) -> SandboxRecord | None:
        """The oldest ready member that still runs, now given away (a hit); members found not
        running on the way are discarded. No await: nobody else can take the same one."""
        policy = self.policy
        while (sandbox_id := policy.take()) is not None:
            record = self.members.pop(sandbox_id)
            if record.state is _S.RUNNING:
                policy.hit(anyio.current_time())
                self.wake()
                return record
            policy.discard(sandbox_id)
            self._discarded(record)
        return None

    def put_back(self, record: SandboxRecord) -> bool:
        """A reset member is ready again, if the policy has room for it (False: delete it)."""
        if not self.policy.put_back(record.sandbox_id, anyio.current_time()):
            return False
        self.members[record.sandbox_id] = record
        self.notify()
        return True

    async def prepare(self, record: SandboxRecord) -> None:
        """Await the options' `prepare` on `record`, `TimedOut` after `prepare_timeout`."""
        prepare, timeout = self.options.prepare, self.options.prepare_timeout
        if prepare is None:
            return
        with anyio.move_on_after(timeout) as bound:
            await prepare(record)
        if bound.cancelled_caught:
            raise TimedOut(
                f"prepare of sandbox {record.sandbox_id} in pool {self.name!r} did not finish "
                f"within {timeout:g} s",
                sandbox_id=record.sandbox_id,
            )

    def failed(self, what: str, exc: Exception) -> None:
        """Record a failure of `what` (logged; `last_exception` is re-raised by waiters)."""
        self.failures += 1
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        self.last_exception = exc
        self.notify()
        if isinstance(exc, RockError):
            log.warning("pool %s: %s", self.name, self.last_error)
        else:  # not ours: most likely a bug in the caller's `prepare`; keep its traceback
            log.error("pool %s: %s", self.name, self.last_error, exc_info=exc)

    def wake(self) -> None:
        """Have the loop plan again."""
        self._wakeup.set()

    def notify(self) -> None:
        """Wake `changed`'s waiters."""
        self._changed.set()
        self._changed = anyio.Event()

    def idle(self) -> list[str]:
        """Every member not given away (ready, then doomed), forgotten from here on."""
        self.members.clear()
        return self.policy.idle()

    async def halt(self) -> None:
        """Start nothing more; cancel the loop's work in flight and return once it stopped."""
        self.policy.close()
        self.notify()
        if self._scope is not None:
            self._scope.cancel()
            await self._stopped.wait()

    # ------------------------------------------------------------------ the loop

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The refill loop (see the module's rules); started in the cluster's task group."""
        policy = self.policy
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
                            self.members.pop(sandbox_id, None)  # trimmed members
                            workers.start_soon(self._delete_doomed, sandbox_id)
                        for _ in range(plan.refills):
                            workers.start_soon(self._refill_one)
                        self._wants_room = plan.wants_room
                        with anyio.CancelScope(deadline=plan.wake_at):
                            await self._wakeup.wait()
        finally:
            self._stopped.set()

    async def _watch_capacity(self) -> None:
        """Wake the loop when the cluster's room may have grown while the loop waits for it."""
        while True:
            await self.site.capacity_changed().wait()
            if self._wants_room:
                self.wake()

    def _tidy(self) -> None:
        """Discard ready members found not running (the cluster changes records in place)."""
        members = self.members
        if all(r.state is _S.RUNNING for r in members.values()):
            return
        for sandbox_id in self.policy.ready_ids():
            record = members[sandbox_id]
            if record.state is not _S.RUNNING:
                del members[sandbox_id]
                self.policy.died(sandbox_id)
                self._discarded(record)

    def _discarded(self, record: SandboxRecord) -> None:
        self.wake()
        log.info("pool %s: member %s is %s; discarded", self.name, record.sandbox_id, record.state)

    def _free_starts(self) -> int:
        """How many creates of the spec the hosts could start right now (see `PoolSite`)."""
        spec = self.spec
        return self.site.startable(Demand(spec.cpus, spec.memory, spec.image))

    async def _refill_one(self) -> None:
        policy = self.policy
        record: SandboxRecord | None = None
        try:
            record = await self.site.create_sandbox(
                self.spec, queue_timeout=self.options.refill_queue_timeout
            )
            await self.prepare(record)
        except Exception as exc:  # a RockError, or whatever the caller's `prepare` raised
            policy.refill_failed(anyio.current_time(), _id_of(record))
            self.failed("refill", exc)
            return
        except BaseException:
            # Cancelled (the pool halts): its sandbox is deleted by `aclose`, or by the cluster
            # when it exits; never awaited here, so a halt never waits for a delete.
            policy.refill_stopped(_id_of(record))
            raise
        finally:
            self.wake()
        policy.refilled(record.sandbox_id, anyio.current_time())
        self.members[record.sandbox_id] = record
        self.notify()

    async def _delete_doomed(self, sandbox_id: str) -> None:
        try:
            await delete_quietly(self.site, [sandbox_id], who=f"pool {self.name}", shield=False)
        except BaseException:
            self.policy.delete_stopped(sandbox_id)  # cancelled: `aclose` deletes it then
            raise
        self.policy.deleted(sandbox_id)


def _id_of(record: SandboxRecord | None) -> str | None:
    return None if record is None else record.sandbox_id


__all__ = ["PoolStock"]
