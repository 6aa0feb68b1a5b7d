"""A cluster-wide start limiter: one named, detached Ray actor that every trainer process asks.

`open_start_limiter(name, max_starts=..., rate=...)` finds (or makes) the actor ``name`` in the
``rock`` namespace and yields a `RayStartLimiter`, a `rock_core.StartGate` to give to
``open_cluster(..., start_gate=...)``. verl's sandbox tools share one semaphore actor the same
way (``get_if_exists``); this one adds what a long training job needs: leased permits, a
restart that counts nothing twice, and our errors (docs/scale-out.md, "One start limiter").

Rules:
- The decisions are `_limiter_book`'s; the actor (`StartLimiterActor`) only calls it on the
  worker's asyncio loop and wakes the calls that wait. ``acquire`` long-polls: it answers
  within `poll` seconds, granted or not, so no call outlives a caller by long, and the client
  asks again. Every call is idempotent (a token names the permit), so Ray retries calls on an
  actor it restarts (``max_restarts=-1``, ``max_task_retries=-1``).
- The client renews every token it holds or waits for, in one call every ``lease / 3``
  seconds, from a task of its own `open_start_limiter` block: a process that dies holding
  permits loses them after the lease; one that stops the block releases them at once. A
  release is sent without waiting for its answer (the next renew settles a lost one).
- The first process makes the actor with its limits; a later one with other limits gets
  `BadRequest` naming both. A removed actor (``ray.kill``) fails the calls in flight with
  `TransportError`; the next call makes it again, and the renews re-adopt the permits held.
- This module imports ray only when it is used (`import_ray`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import anyio
import anyio.to_thread

from rock_core import BadRequest, RockError, TransportError

from ._limiter_book import LimiterBook, LimiterConfig, check_name, limiter_config
from ._ray_stream import NAMESPACE, actor_class, call, import_ray, submit

log = logging.getLogger("rock_sdk")

POLL = 5.0  # seconds an acquire call waits in the actor before it answers "not yet"
LOOKUP_TIMEOUT = 60.0  # seconds to find or make the actor (Ray may start a worker for it)


class StartLimiterActor:
    """The Ray actor: a `LimiterBook` on the worker's loop (see the module's rules)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = LimiterConfig(**config)
        import ray

        restarted = ray.get_runtime_context().was_current_actor_reconstructed
        # After a restart, grant nothing until every live client has renewed once.
        settle = self.config.lease / 3 + 1.0 if restarted else 0.0
        self.book = LimiterBook(self.config, time.monotonic(), settle=settle)
        self.restarted = restarted
        self._waiting: dict[str, asyncio.Event] = {}  # token -> set once it is granted
        self._timer: asyncio.TimerHandle | None = None

    def _pump(self) -> None:
        """Apply the book's decisions now, wake the calls whose token was granted (only those),
        and pump again when time alone may change something."""
        delay = self.book.pump(time.monotonic())
        for token, granted in self._waiting.items():
            if token in self.book.held:
                granted.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if delay is not None and self.book.line:
            self._timer = asyncio.get_running_loop().call_later(delay, self._pump)

    async def limits(self) -> dict[str, Any]:
        """The limits it was made with."""
        return asdict(self.config)

    async def acquire(self, client: str, token: str, poll: float) -> bool:
        """Whether `token` holds a permit, waiting for one at most `poll` seconds."""
        self.book.ask(client, token, time.monotonic())
        self._pump()
        if self.book.holds(token) or token not in self.book.line:
            return self.book.holds(token)
        granted = self._waiting.setdefault(token, asyncio.Event())
        try:
            await asyncio.wait_for(granted.wait(), poll)
        except TimeoutError:
            pass
        finally:
            if self._waiting.get(token) is granted:
                del self._waiting[token]
        return self.book.holds(token)

    async def release(self, client: str, token: str) -> None:
        """Give `token` back (held or waited for)."""
        self.book.release(client, token, time.monotonic())
        self._pump()

    async def renew(self, client: str, holds: list[str], waits: list[str]) -> None:
        """`client` is alive with these tokens (see `LimiterBook.renew`)."""
        self.book.renew(client, holds, waits, time.monotonic())
        self._pump()

    async def statistics(self) -> dict[str, Any]:
        """The book's counts, whether this actor is a restart, and its worker's pid."""
        self._pump()
        return {**self.book.statistics(), "restarted": self.restarted, "pid": os.getpid()}


class RayStartLimiter:
    """A `rock_core.StartGate` backed by the named limiter actor (made by `open_start_limiter`)."""

    def __init__(self, ray: Any, name: str, config: LimiterConfig) -> None:
        self._ray = ray
        self.name = name
        self.config = config
        self.client = secrets.token_hex(8)
        self.holds: set[str] = set()
        self.waits: set[str] = set()
        self._handle: Any = None
        self._label = f"start limiter {name!r}"

    def __repr__(self) -> str:
        return f"RayStartLimiter({self.name!r})"

    async def acquire(self, token: str) -> None:
        """Wait for a permit for `token` (cancellable; the core releases it either way)."""
        self.waits.add(token)
        try:
            poll = min(POLL, self.config.lease / 3)
            while not await self._call("acquire", self.client, token, poll):
                pass
            self.holds.add(token)
        finally:
            self.waits.discard(token)

    async def release(self, token: str) -> None:
        """Give `token` back, held or waited for. Its answer is not waited for, so a create
        does not wait a round trip to the actor: a release that is lost is done by the next
        renew, which no longer names the token."""
        self.holds.discard(token)
        self.waits.discard(token)
        actor = await self._actor()
        submit(self._ray, actor.release, self._label, self.client, token, what="actor")

    async def statistics(self) -> dict[str, Any]:
        """The limiter's counts: ``held``, ``waiting``, ``peak``, ``grants``, ``expired``,
        ``adopted``, its limits, and ``restarted`` (the actor is a restart of an earlier one)."""
        return dict(await self._call("statistics"))

    async def _renew_forever(self) -> None:
        every = self.config.lease / 3
        while True:
            await anyio.sleep(every)
            with anyio.move_on_after(self.config.lease):  # a slow renew delays the next
                try:
                    await self._call("renew", self.client, sorted(self.holds), sorted(self.waits))
                except RockError as exc:
                    log.warning(
                        "%s: a renew failed (its permits expire after the lease): %s",
                        self._label,
                        exc,
                    )

    async def _actor(self) -> Any:
        if self._handle is None:
            ray = self._ray
            with anyio.fail_after(LOOKUP_TIMEOUT):
                handle = await anyio.to_thread.run_sync(self._get_or_make, abandon_on_cancel=True)
            limits = await call(ray, handle.limits, self._label, what="actor")
            if limits != asdict(self.config):
                raise BadRequest(
                    f"{self._label} exists with other limits: it has {limits}, this process"
                    f" asked for {asdict(self.config)} (ray.kill it to change them)"
                )
            # Kept only once its limits are ours: a later call must not skip the check.
            self._handle = handle
        return self._handle

    def _get_or_make(self) -> Any:
        ray = self._ray
        if not ray.is_initialized():
            raise TransportError(f"{self._label}: this process has left its Ray cluster")
        try:
            return (
                actor_class(ray, StartLimiterActor)
                .options(
                    name=self.name,
                    namespace=NAMESPACE,
                    lifetime="detached",
                    get_if_exists=True,
                    max_restarts=-1,
                    max_task_retries=-1,
                    max_concurrency=10_000,
                    num_cpus=0,
                )
                .remote(asdict(self.config))
            )
        except Exception as exc:  # Ray's own errors, raised as they are or as plain Exception
            raise TransportError(f"{self._label}: cannot find or make its actor: {exc}") from exc

    async def _call(self, method: str, *args: Any) -> Any:
        actor = await self._actor()
        try:
            return await call(self._ray, getattr(actor, method), self._label, *args, what="actor")
        except TransportError:
            self._handle = None  # removed or unreachable: found (or made) again by the next call
            raise


@asynccontextmanager
async def open_start_limiter(
    name: str = "rock-starts",
    *,
    max_starts: int | None = None,
    rate: float | None = None,
    burst: int | None = None,
    lease: float = 30.0,
) -> AsyncIterator[RayStartLimiter]:
    """The shared limiter ``name`` (made by the first process with these limits), as a gate.

    - `max_starts`: creates in flight at once, counting every process that uses the limiter.
    - `rate`: starts per second, all processes together (a token bucket holding `burst`
      starts, by default one second's worth).
    - `lease`: seconds after which a silent process's permits are taken back.

    ``ray.init`` must have run in this process. `BadRequest` for a bad value, no limit, or
    limits other than those of the existing actor; `TransportError` when Ray fails. On exit the
    permits still held are released and the renews stop; the actor stays for other processes.
    """
    config = limiter_config(max_starts, rate, burst, lease)
    check_name(name)
    ray = import_ray()
    if not ray.is_initialized():
        raise BadRequest("open_start_limiter needs Ray: call ray.init(address=...) first")
    limiter = RayStartLimiter(ray, name, config)
    await limiter._actor()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter._renew_forever)
        try:
            yield limiter
        finally:
            tg.cancel_scope.cancel()
            limiter.holds.clear()
            limiter.waits.clear()
            # One renew naming nothing gives back every permit of this process, answered.
            with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
                with contextlib.suppress(RockError):  # left to the lease
                    await limiter._call("renew", limiter.client, [], [])


__all__ = ["RayStartLimiter", "StartLimiterActor", "open_start_limiter"]
