"""`open_cluster` for SDK users: the core's cluster, handing out `Sandbox` objects.

    async with open_cluster(["ssh://rl@gpu-01", "ssh://cpu-[01-40]"]) as cluster:
        sb = await cluster.create_sandbox(SandboxConfig(image="python:3.11", cpus=1))

Everything about hosts, placement and failures is the core's (`rock_core.open_cluster`); this
wrapper only turns records into `Sandbox` objects.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TextIO

from rock_core import (
    Cluster,
    ClusterOptions,
    ClusterStatistics,
    Connector,
    Host,
    HostSource,
    LifecycleEvent,
    PoolOptions,
    ProgressCallback,
    list_images,
    prune_images,
    warm_image,
)
from rock_core import open_cluster as open_core_cluster
from rock_core.protocol import CheckpointInfo, ImageInfo, ImageReport, PruneResult

from ._build import build_image
from ._bulk import CreateManyResult, CreateProgress, create_many
from ._config import SandboxConfig
from ._pool import Pool, SandboxPrepare, open_pool
from ._sandbox import Checkpoint, Sandbox, fork


class SandboxCluster:
    """Sandboxes across hosts; `core` is the underlying `rock_core.Cluster`."""

    def __init__(self, core: Cluster) -> None:
        self.core = core

    @property
    def owner(self) -> str:
        """The owner identity this cluster's sandboxes carry."""
        return self.core.owner

    @property
    def hosts(self) -> dict[str, Host]:
        """The cluster's hosts by id, with their link state."""
        return dict(self.core.hosts)

    async def create_sandbox(
        self, config: SandboxConfig | None = None, *, sandbox_id: str | None = None
    ) -> Sandbox:
        """Place and start a sandbox; with a `sandbox_id`, a retry returns the same sandbox."""
        sandbox = Sandbox(config, cluster=self.core, sandbox_id=sandbox_id)
        await sandbox.start()
        return sandbox

    def sandbox(self, sandbox_id: str) -> Sandbox:
        """A `Sandbox` for a sandbox this cluster knows (created here or adopted)."""
        return Sandbox.attach(self.core, sandbox_id)

    def sandboxes(self) -> list[Sandbox]:
        """Every sandbox this cluster knows that is not deleted."""
        return [
            Sandbox.attach(self.core, record.sandbox_id)
            for record in self.core.records()
            if record.state.value != "deleted"
        ]

    def drain_host(self, host_id: str, draining: bool = True) -> None:
        """Stop (or resume) placing new sandboxes on a host; its sandboxes stay."""
        self.core.drain_host(host_id, draining)

    def events(self, *, buffer: int | None = None) -> AsyncIterator[LifecycleEvent]:
        """Every step of this cluster's sandboxes from now on, each with its end reason:
        ``async for ev in cluster.events()`` (`rock_core.Cluster.events`; docs/events.md)."""
        return self.core.events() if buffer is None else self.core.events(buffer=buffer)

    def statistics(self) -> ClusterStatistics:
        """Hosts, capacity, use and queue depth, and every open pool."""
        return self.core.statistics()

    async def create_many(
        self,
        config: SandboxConfig | Sequence[SandboxConfig] | None,
        n: int | None = None,
        *,
        concurrency: int | None = None,
        sandbox_ids: Sequence[str] | None = None,
        on_progress: Callable[[CreateProgress], object] | None = None,
        progress: bool | TextIO | ProgressCallback = False,
        check: bool = False,
    ) -> CreateManyResult:
        """Start `n` sandboxes of `config` (or one per config of a list), with bounded
        concurrency and progress; return what started and an error per sandbox that did not.

        A partial failure raises nothing unless `check=True`. See docs/pools.md.
        """
        return await create_many(
            self.core,
            config,
            n,
            concurrency=concurrency,
            sandbox_ids=sandbox_ids,
            on_progress=on_progress,
            progress=progress,
            check=check,
        )

    async def fork(
        self, checkpoint: Checkpoint | str, n: int, config: SandboxConfig | None = None
    ) -> list[Sandbox]:
        """Start `n` sandboxes from `checkpoint` (a `Checkpoint` or its id) with `config`'s
        settings, spread over the hosts; a host that lacks it gets it streamed once. If any
        fails, those started are deleted and the error raised. See docs/checkpoints.md."""
        return await fork(self.core, checkpoint, n, config)

    async def checkpoints(self) -> list[CheckpointInfo]:
        """Every checkpoint on every connected host (one entry per host holding it)."""
        return await self.core.checkpoints()

    async def delete_checkpoint(self, checkpoint: Checkpoint | str) -> list[CheckpointInfo]:
        """Remove a checkpoint on every host; return the copies kept because forks use them."""
        value = checkpoint.value if isinstance(checkpoint, Checkpoint) else checkpoint
        return await self.core.delete_checkpoint(value)

    @asynccontextmanager
    async def open_pool(
        self,
        config: SandboxConfig | None = None,
        options: PoolOptions | None = None,
        *,
        session: bool = True,
        prepare: SandboxPrepare | None = None,
        **changes: Any,
    ) -> AsyncIterator[Pool]:
        """A warm pool of `config`, refilled in the background; closed when the block ends.

        `min_size` sandboxes are kept ready; misses raise the pool's target up to `max_size`
        (default `min_size`). The options are `rock_sdk.open_pool`'s (`session`, `prepare`)
        and `rock_core.PoolOptions`' (as `options` or keywords). See docs/pools.md.
        """
        async with open_pool(
            self.core, config, options, session=session, prepare=prepare, **changes
        ) as pool:
            yield pool

    async def list_images(self) -> dict[str, ImageReport]:
        """Every host's images, most recently used first, with their disk use."""
        return await list_images(self.core)

    async def warm_image(
        self, image: str, *, progress: ProgressCallback | None = None
    ) -> dict[str, ImageInfo]:
        """Make `image` present on every host; `ImageNotFound` where it cannot be had.
        `progress(Progress)` counts the hosts done (unit "hosts")."""
        return await warm_image(self.core, image, progress=progress)

    async def build_image(
        self,
        context: str | os.PathLike[str],
        tag: str,
        *,
        dockerfile: str = "Dockerfile",
        hosts: Sequence[str] | None = None,
    ) -> dict[str, ImageInfo]:
        """Build image `tag` from the local folder `context` (its Dockerfile at `dockerfile`)
        on every connected host, or on `hosts`; no registry is needed when the base image is
        on the hosts. The built image by host id. See docs/using-sandboxes.md."""
        return await build_image(self.core, context, tag, dockerfile=dockerfile, hosts=hosts)

    async def prune_images(
        self,
        *,
        max_bytes: int | None = None,
        max_percent: float | None = None,
        only: list[str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, PruneResult]:
        """On every host, remove least recently used unused images above one limit."""
        return await prune_images(
            self.core, max_bytes=max_bytes, max_percent=max_percent, only=only, dry_run=dry_run
        )


@asynccontextmanager
async def open_cluster(
    hosts: Sequence[str | Connector] | str | HostSource = ("local",),
    options: ClusterOptions | None = None,
    **changes: Any,
) -> AsyncIterator[SandboxCluster]:
    """Connect to `hosts` and yield the cluster; on exit its sandboxes are deleted.

    The arguments are `rock_core.open_cluster`'s: addresses (``local``, ``unix:///path``,
    ``ssh://[user@]host[:port]`` with ``[01-40]`` ranges), `Connector`s or a `HostSource`, and a
    `ClusterOptions` and/or its fields as keywords (the owner identity, the placement policy,
    the queue and start limits, the owner lease, the grace period before a silent host's
    sandboxes are lost, heartbeats, `SshOptions`, and `queue_timeout`: how long a create may
    wait for room before `CapacityError`; a config's `startup_timeout` overrides it).
    """
    async with open_core_cluster(hosts, options, **changes) as core:
        yield SandboxCluster(core)


__all__ = ["SandboxCluster", "open_cluster"]
