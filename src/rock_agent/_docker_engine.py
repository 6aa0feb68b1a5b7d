"""The Docker engine beyond one sandbox's lifecycle: its facts, images, commits, stats, events.

Rules:
- Every engine call goes through `_engine`: it is bounded (`Bounds`) and its failures become
  our tree; what it returns is typed here (`_docker_json`), so no engine JSON leaves.
- A pull is bounded by its progress (the engine must say something every `pull_idle`), not
  by its length; a pull policy of "always" falls back on the local copy when the registry is
  unreachable or stalls.
- Containers come in resolved (`DockerRuntime` finds a sandbox's); nothing here names one.
- Facts of the engine (`docker info`, whether it can enforce a `disk` limit) are read once.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiodocker
import anyio

from rock_core import (
    EngineUnavailable,
    ImageNotFound,
    RockError,
    SandboxFailed,
    TimedOut,
    TransportError,
)

from ._build_log import BuildLog
from ._docker_json import (
    build_progress,
    commit_config,
    disk_usage,
    engine_event,
    inspected_image,
    stats_reading,
)
from ._engine import Bounds, disk_limit_problem, engine_call, engine_errors
from ._exec_stream import ExecStream
from ._labels import LABEL_HOST
from ._pull_policy import check_policy, must_pull, unpulled
from ._runtime import (
    BuildOutcome,
    DiskUsage,
    EngineEvent,
    ImageRecord,
    PullPolicy,
    Resources,
    StatsReading,
)

MOUNTINFO = Path("/proc/self/mountinfo")


class DockerEngine:
    """Facts, images, commits, stats and events of one engine, for the agent of one host."""

    # The engine's names of the events `events` reads (Podman's differ: `_podman`).
    EVENT_NAMES: tuple[str, ...] = ("start", "die", "destroy", "pause", "unpause")
    exec_stream: type[ExecStream] = ExecStream  # how an exec's stream tells a failed start

    def __init__(self, docker: aiodocker.Docker, host_id: str, bounds: Bounds) -> None:
        self.docker = docker
        self.host_id = host_id
        self.bounds = bounds
        self._info: dict[str, Any] | None = None  # `docker info`, once the engine answered
        self._disk_problem: tuple[str | None] | None = None  # why no disk limits, once known

    # ------------------------------------------------------------------ facts

    async def info(self) -> dict[str, Any]:
        """The engine's `docker info`, read once (`EngineUnavailable` if no engine answers)."""
        if self._info is None:
            with engine_call("reading engine info", self.bounds.control):
                info = await self.docker.system.info()
            self._info = dict(info)
        return self._info

    async def resources(self) -> Resources:
        """The cpus and memory of the engine's host."""
        info = await self.info()
        return Resources(cpus=float(info.get("NCPU") or 1), memory=int(info.get("MemTotal") or 0))

    async def data_root(self) -> str:
        """The engine's data folder (`DockerRootDir`), where image layers live."""
        return str((await self.info()).get("DockerRootDir") or "")

    async def disk_limit_problem(self) -> str | None:
        """Why this engine cannot enforce a sandbox's `disk` limit; None if it can."""
        if self._disk_problem is None:
            info = await self.info()
            root = str(info.get("DockerRootDir") or "")
            mountinfo = await anyio.to_thread.run_sync(self._local_mountinfo, root)
            self._disk_problem = (disk_limit_problem(info, mountinfo),)
        return self._disk_problem[0]

    def _local_mountinfo(self, root: str) -> str | None:
        """This machine's mount table, if the engine keeps its data here (else None)."""
        if not str(self.docker.docker_host).startswith("unix://") or not os.path.isdir(root):
            return None
        try:
            return MOUNTINFO.read_text()
        except OSError:
            return None

    # ------------------------------------------------------------------ images

    async def local_images(self) -> list[str]:
        """Tags of the images present on the engine."""
        with engine_call("listing images", self.bounds.control):
            images = await self.docker.images.list()
        return sorted(tag for image in images for tag in (image.get("RepoTags") or []) if tag)

    async def inspect_raw(self, image: str) -> dict[str, Any]:
        """The engine's inspect record of an image; a missing one raises `ImageNotFound`."""
        with engine_call(f"image {image}", self.bounds.control, not_found=ImageNotFound):
            found: dict[str, Any] = await self.docker.images.inspect(image)
        return found

    async def inspect(self, image: str) -> ImageRecord:
        """One image; a missing one raises `ImageNotFound`."""
        return inspected_image(await self.inspect_raw(image))

    async def ensure(self, image: str, policy: PullPolicy) -> None:
        """Make `image` present according to the pull policy (`_pull_policy`)."""
        check_policy(policy)
        try:
            await self.inspect_raw(image)
            present = True
        except ImageNotFound:
            present = False
        if not must_pull(image, policy, present):
            return
        try:
            await self._pull(image)
        except (EngineUnavailable, TimedOut) as exc:
            if present and isinstance(exc, TimedOut):
                return  # 'always' but the registry stalls: the local copy will do
            raise
        except RockError as exc:
            problem = unpulled(image, present, exc)  # None: 'always', the local copy will do
            if problem is not None:
                raise problem from exc

    async def _pull(self, image: str) -> None:
        """Pull `image`, bounded by its progress: the engine must say something regularly."""
        progress: Any = self.docker.images.pull(image, stream=True)
        try:
            while True:
                with engine_call(f"pulling image {image}", self.bounds.pull_idle):
                    try:
                        await anext(progress)
                    except StopAsyncIteration:
                        return
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await progress.aclose()

    async def remove(self, reference: str) -> None:
        """Remove one tag (the image goes with its last tag), never forced: used images stay."""
        with engine_call(
            f"removing image {reference}", self.bounds.remove, not_found=ImageNotFound
        ):
            await self.docker.images.delete(reference, force=False)

    async def disk_usage(self) -> DiskUsage:
        """The engine's disk-usage report: every image with its shared size, and the layers' total.

        The engine also measures every container's writable layer for this report.
        """
        with engine_call("reading the engine's disk usage", self.bounds.disk_usage):
            report: dict[str, Any] = await self.docker._query_json("system/df", timeout=None)
        return disk_usage(report)

    async def build(
        self,
        context: AsyncIterator[bytes],
        *,
        tag: str,
        dockerfile: str,
        labels: Mapping[str, str],
    ) -> BuildOutcome:
        """Build image `tag` from a tar stream of its context (see `ContainerRuntime`).

        The context is spooled to a temporary file first, so a broken upload never reaches the
        engine; the build is bounded by its progress, as a pull is. Intermediate containers
        are removed whether it succeeds or fails (``forcerm``).
        """
        log = BuildLog(tag)
        with tempfile.TemporaryFile(prefix="rock-build-") as spool:
            async for chunk in context:
                await anyio.to_thread.run_sync(spool.write, chunk)
            await anyio.to_thread.run_sync(spool.seek, 0)
            params = {"t": tag, "dockerfile": dockerfile, "rm": "1", "forcerm": "1", "pull": "0"}
            params["labels"] = json.dumps(dict(labels))
            image_id = ""
            what = f"building image {tag}"
            idle = self.bounds.pull_idle
            # One deadline that each word of the engine moves on: bounded by progress only.
            with anyio.CancelScope(deadline=anyio.current_time() + idle) as scope:
                with engine_errors(what):
                    async with self.docker._query(
                        "build",
                        method="POST",
                        params=params,
                        headers={"content-type": "application/x-tar"},
                        data=spool,
                        timeout=None,
                    ) as response:
                        try:
                            async for line in response.content:
                                scope.deadline = anyio.current_time() + idle
                                image_id = build_progress(line, log) or image_id
                        finally:
                            # The connection goes with the response: the engine stops a build
                            # whose client left (`_query` itself never releases it).
                            response.close()
            if scope.cancelled_caught:
                raise TimedOut(f"{what}: the Docker engine said nothing for {idle:g} s")
        if not image_id:
            image_id = (await self.inspect(tag)).image_id
        return BuildOutcome(image_id=image_id, output=log.lines)

    # ------------------------------------------------------------------ one container

    async def commit(
        self,
        container: Any,
        sandbox_id: str,
        *,
        repository: str,
        tag: str,
        message: str,
        changes: list[str],
        labels: Mapping[str, str],
        pause: bool,
    ) -> str:
        """Save the container's file system as image `repository:tag`; return the image id."""
        attrs: dict[str, Any] = container._container
        source = await self.inspect_raw(str(attrs.get("Image", "")))
        config = commit_config(attrs, source.get("Config") or {})
        config["Labels"].update(labels)
        with engine_call(f"committing sandbox {sandbox_id}", self.bounds.commit):
            result = await container.commit(
                repository=repository,
                tag=tag,
                message=message or None,
                changes=changes or None,
                config=config,
                pause=pause,
                timeout=None,
            )
        image_id = result.get("Id") if isinstance(result, dict) else None
        if not isinstance(image_id, str) or not image_id:
            raise SandboxFailed(f"committing sandbox {sandbox_id}: the engine named no image")
        return image_id

    async def stats(self, container: Any, sandbox_id: str) -> StatsReading:
        """One stats reading (the engine compares it with one a second earlier)."""
        what = f"reading the resource use of sandbox {sandbox_id}"
        with engine_call(what, self.bounds.stats):
            readings = await container.stats(stream=False, timeout=None)
        if not readings or not isinstance(readings[0], dict):
            raise SandboxFailed(f"the engine returned no stats for sandbox {sandbox_id}")
        return stats_reading(readings[0])

    # ------------------------------------------------------------------ events

    def engine_event(self, raw: dict[str, Any], default_uid: int) -> EngineEvent | None:
        """One event of the engine's feed, typed (`_docker_json.engine_event`)."""
        return engine_event(raw, default_uid)

    async def events(self, since: float, default_uid: int) -> AsyncIterator[EngineEvent]:
        """Start, die, destroy, pause and unpause events of this host's containers from `since`
        (unix time) on.

        The engine replays the events since then, then streams new ones as they happen.
        """
        filters = {
            "type": ["container"],
            "label": [f"{LABEL_HOST}={self.host_id}"],
            "event": list(self.EVENT_NAMES),
        }
        params = {"since": f"{since:.6f}", "filters": json.dumps(filters)}
        with engine_errors("watching the engine's events"):
            async with self.docker._query(
                "events", method="GET", params=params, timeout=None
            ) as response:
                async for line in response.content:
                    if not line.strip():
                        continue
                    try:
                        raw = json.loads(line)
                    except ValueError as exc:
                        raise TransportError(f"the engine sent an unreadable event: {exc}") from exc
                    event = self.engine_event(raw, default_uid) if isinstance(raw, dict) else None
                    if event is not None:
                        yield event


__all__ = ["MOUNTINFO", "DockerEngine"]
