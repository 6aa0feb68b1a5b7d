"""The runtime seam's calls that span the engine rather than one sandbox (its resources,
images, builds, disk usage and events): a mixin of `DockerRuntime`, each a call of its
`DockerEngine` (`_docker_engine`), so `_docker` keeps to sandboxes and their processes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from ._docker_engine import DockerEngine
from ._runtime import BuildOutcome, DiskUsage, EngineEvent, ImageRecord, PullPolicy, Resources


class DockerEngineCalls:
    """The engine-wide calls of `DockerRuntime` (module docstring)."""

    engine: DockerEngine
    uid: int

    async def engine_resources(self) -> Resources:
        """The cpus and memory of the engine's host."""
        return await self.engine.resources()

    async def local_images(self) -> list[str]:
        """Tags of the images present on the engine."""
        return await self.engine.local_images()

    async def data_root(self) -> str:
        """The engine's data folder (`DockerRootDir`), where image layers live."""
        return await self.engine.data_root()

    async def supports_disk_limits(self) -> bool:
        """True if a `disk` limit can be enforced here (the "disk-limits" capability)."""
        return await self.engine.disk_limit_problem() is None

    async def ensure_image(self, image: str, policy: PullPolicy) -> None:
        """Make `image` present according to the pull policy, or raise `ImageNotFound`."""
        await self.engine.ensure(image, policy)

    async def disk_usage(self) -> DiskUsage:
        """The engine's disk-usage report (it measures every container's layer for it)."""
        return await self.engine.disk_usage()

    async def inspect_image(self, reference: str) -> ImageRecord:
        """The engine's view of one image; a missing one raises `ImageNotFound`."""
        return await self.engine.inspect(reference)

    async def remove_image(self, reference: str) -> None:
        """Remove one tag (the image goes with its last tag), never forced: used images stay."""
        await self.engine.remove(reference)

    async def build_image(
        self,
        context: AsyncIterator[bytes],
        *,
        tag: str,
        dockerfile: str,
        labels: Mapping[str, str],
    ) -> BuildOutcome:
        """Build image `tag` from a tar stream of its context (see `ContainerRuntime`)."""
        return await self.engine.build(context, tag=tag, dockerfile=dockerfile, labels=labels)

    def events(self, since: float) -> AsyncIterator[EngineEvent]:
        """Start, die and destroy events of this host's containers from `since` (unix time) on."""
        return self.engine.events(since, self.uid)


__all__ = ["DockerEngineCalls"]
