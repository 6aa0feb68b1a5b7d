"""`Pool`: warm sandboxes of one `SandboxConfig`, handed out as `Sandbox` objects.

    async with open_cluster() as cluster:
        async with cluster.open_pool(SandboxConfig(image="python:3.11"), min_size=8) as pool:
            async with pool.sandbox() as sb:          # ready in well under a millisecond
                await sb.arun("python3 -V")           # one round trip: the shell is open

The core's pool (`rock_core.RecordPool`) does the work: refills in the cluster's task group within
the hosts' start budget, hits and misses, release and reset, statistics. This wrapper opens
each member's default session before it is handed out (so the first command is one round
trip, not a shell start), runs an optional `prepare(sandbox)`, and hands out `Sandbox`es.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from rock_core import (
    AlreadyExists,
    BadRequest,
    Cluster,
    PoolOptions,
    PoolStatistics,
    ProgressCallback,
    RecordPool,
    SandboxRecord,
)
from rock_core import open_pool as open_core_pool

from . import _arguments as args
from ._commands import DEFAULT_SESSION
from ._config import SandboxConfig
from ._pool_progress import wait_ready_reporting
from ._sandbox import Sandbox

SandboxPrepare = Callable[[Sandbox], Awaitable[None]]
"""Run on every member before it is handed out (after a reset too), e.g. to install a package."""


class Pool:
    """Warm sandboxes of one config; `acquire` a ready one (or a cold start), `release` it.

    `core` is the underlying `rock_core.RecordPool` (its module documents every rule). A released
    sandbox is deleted, or with ``reset=True`` restarted (processes and sessions end, files
    stay) and handed out again later. Hold no reference to a sandbox after releasing it.
    """

    def __init__(
        self, core: RecordPool, cluster: Cluster, config: SandboxConfig, *, session: bool
    ) -> None:
        self.core = core
        self.cluster = cluster
        self.config = config
        self._session = session

    @property
    def name(self) -> str:
        """The pool's name; its members carry the label ``rock.pool=NAME``."""
        return self.core.name

    async def acquire(self) -> Sandbox:
        """A running sandbox that is now the caller's: a ready member, else a cold start."""
        record = await self.core.acquire()
        sandbox = Sandbox.attach(self.cluster, record.sandbox_id)
        if self._session:
            # `_prepare` opened the default session: the first command needs no shell start.
            sandbox._sessions.add(DEFAULT_SESSION)
        return sandbox

    async def release(self, sandbox: Sandbox | str, *, reset: bool = False) -> None:
        """Give a sandbox back: it is deleted, or with `reset` restarted and put back."""
        if not isinstance(sandbox, Sandbox | str):
            raise BadRequest(f"release takes a Sandbox or a sandbox id, got {sandbox!r}")
        sandbox_id = sandbox if isinstance(sandbox, str) else sandbox.sandbox_id
        await self.core.release(sandbox_id, reset=args.flag(reset, "reset"))

    @asynccontextmanager
    async def sandbox(self, *, reset: bool = False) -> AsyncIterator[Sandbox]:
        """``async with pool.sandbox() as sb:`` acquires, and releases when the block ends."""
        args.flag(reset, "reset")
        sandbox = await self.acquire()
        try:
            yield sandbox
        finally:
            await self.release(sandbox, reset=reset)

    async def wait_ready(
        self, count: int | None = None, *, progress: ProgressCallback | None = None
    ) -> None:
        """Wait until `count` members (default `min_size`) are ready; see `rock_core.RecordPool`.
        `progress(Progress)` counts the ready members (unit "sandboxes") of `count`."""
        if progress is None:
            await self.core.wait_ready(count)
        else:
            await wait_ready_reporting(self.core, count, progress)

    def statistics(self) -> PoolStatistics:
        """Size, ready, in flight, handed out, hits, misses, refill rate, failures."""
        return self.core.statistics()

    async def aclose(self) -> None:
        """Stop refilling and delete every member not handed out; handed-out ones stay with
        their holders."""
        await self.core.aclose()

    def __repr__(self) -> str:
        return f"<Pool {self.name} {self.config.image}>"


@asynccontextmanager
async def open_pool(
    cluster: Cluster,
    config: SandboxConfig | None = None,
    options: PoolOptions | None = None,
    *,
    session: bool = True,
    prepare: SandboxPrepare | None = None,
    **changes: Any,
) -> AsyncIterator[Pool]:
    """A warm pool of `config` in `cluster`; closed (idle members deleted) when the block ends.

    `session` opens each member's default session ahead; `prepare(sandbox)` runs after it.
    Both together must finish within `prepare_timeout` seconds, else the member is deleted
    and the acquire (or refill) fails with `TimedOut`. The other options (`min_size`,
    `max_size`, `name`, ...) are `rock_core.PoolOptions`: pass one as `options`, or its fields
    as keywords.
    """
    if config is not None and not isinstance(config, SandboxConfig):
        raise BadRequest(f"config must be a SandboxConfig or None, got {config!r}")
    config = config or SandboxConfig()
    spec = config.to_spec()
    args.flag(session, "session")
    args.callback(prepare, "prepare", "a Sandbox (async)")

    async def prepare_member(record: SandboxRecord) -> None:
        sandbox = Sandbox.attach(cluster, record.sandbox_id)
        if session:
            try:
                await sandbox.create_session(DEFAULT_SESSION)
            except AlreadyExists:
                pass  # kept by its agent (an adopted sandbox): usable as it is
        if prepare is not None:
            await prepare(sandbox)

    options = PoolOptions.of(options, **changes)
    if options.prepare is not None:
        raise BadRequest(
            "options.prepare takes a record; give rock_sdk's open_pool prepare=... instead "
            "(it takes a Sandbox)"
        )
    member_prepare = prepare_member if session or prepare is not None else None
    async with open_core_pool(cluster, spec, options, prepare=member_prepare) as core:
        yield Pool(core, cluster, config, session=session)


__all__ = ["Pool", "SandboxPrepare", "open_pool"]
