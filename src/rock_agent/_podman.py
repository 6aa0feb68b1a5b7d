"""The Podman runtime: `DockerRuntime` driving Podman's Docker-compatible API socket (rootless
or not), with the few ways Podman answers differently written out here, one method each.

Rules:
- Everything not listed below is the Docker runtime's own code, run unchanged: containers,
  labels, archives, sessions, ports (for a root agent, as on Docker), builds, stats, reaping
  and adoption. A change to the Docker runtime reaches Podman with no change here.
- The differences, each translated to what the Docker runtime (and the agent) expects:
  - events: Podman filters by its own names ("died", "remove") and names the exit code
    ``containerExitCode``; the feed is read with those and translated before it is typed.
  - images: an image loaded or built without a registry is named ``localhost/NAME``, one from
    Docker Hub ``docker.io/[library/]NAME``; tags are reported as Docker shows them (``NAME``),
    the reference a spec uses (Podman resolves it to the local one).
  - exec: Podman forgets an ended exec's pid, and tells a process its runtime could not start
    on stderr, as ``Error: <runtime>: exec failed: ...``, with exit code 126 or 127
    (`PodmanExecStream`); the reason is typed by `_start_failure` as Docker's is.
  - logs: Podman stamps lines in whole seconds; stamps are padded to Docker's nanoseconds so
    a reader parses one format.
  - files: Podman makes a missing folder an upload names; an upload first checks that the
    folder is there (`FileNotFound`) and is a folder (`BadRequest`), as Docker answers.
  - pause: rootless Podman on cgroup v1 has no freezer of its own: pausing is `BadRequest`
    saying so, not the engine's 500, and a commit there does not freeze the sandbox.
  - commit: Podman ignores the config a commit carries; it is given as Dockerfile changes.
  - limits: Podman ignores cpu and memory limits where it cannot use the host's cgroups
    (rootless on cgroup v1, or cgroup v2 without the controllers delegated to the user). The
    sandbox still runs; the agent logs it once (`PodmanHost.limit_problem`).
- What the host allows is read once from Podman itself (``libpod/info``), never guessed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiodocker
import msgspec

from rock_core import BadRequest, FileNotFound, ProtocolError, SandboxFailed
from rock_core.protocol import NetworkPolicy, SandboxInfo, SandboxSpec

from ._docker import DockerRuntime, container_name
from ._docker_engine import DockerEngine
from ._docker_json import commit_config
from ._engine import Bounds, engine_call
from ._exec_stream import START_FAILURE_TEXT, ExecStream
from ._runtime import DiskUsage, EngineEvent, ImageRecord, OutputChunk

log = logging.getLogger("rock_agent")

LOCAL_PREFIX = "localhost/"  # Podman's registry name for images that came from no registry
# Podman's event names (as its filter matches them) for Docker's start/die/destroy/pause/unpause.
PODMAN_EVENTS = ("start", "died", "remove", "pause", "unpause")
# Podman's exit codes of a process its runtime could not start: cannot run it, not found.
REFUSED_CODES = (126, 127)
PATH_STAT = "X-Docker-Container-Path-Stat"  # the archive API's header describing a path
_REFUSAL = re.compile(rb"^Error: \S+: exec failed: ")
_WHOLE_SECOND_STAMP = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z ", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class PodmanHost:
    """What a Podman service can do on its host, from its own report (``libpod/info``)."""

    rootless: bool
    cgroup_version: str  # "v1" or "v2"
    controllers: tuple[str, ...]  # the cgroup controllers it may use

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> PodmanHost:
        """Read from the ``host`` part of Podman's ``libpod/info`` answer."""
        host = _dict(info.get("host"))
        controllers = host.get("cgroupControllers") or []
        return cls(
            rootless=bool(_dict(host.get("security")).get("rootless")),
            cgroup_version=str(host.get("cgroupVersion") or ""),
            controllers=tuple(c for c in controllers if isinstance(c, str)),
        )

    def pause_problem(self) -> str | None:
        """Why a sandbox cannot be paused here; None if it can."""
        if self.rootless and self.cgroup_version == "v1":
            return (
                "rootless Podman cannot pause on this host: its cgroups are v1, and pausing "
                "needs cgroup v2 (the freezer of a cgroup delegated to the user)"
            )
        return None

    def limit_problem(self) -> str | None:
        """Why cpu and memory limits are not enforced here; None if they are."""
        if self.rootless and self.cgroup_version == "v1":
            return "rootless Podman on cgroup v1 ignores cpu and memory limits"
        missing = [c for c in ("cpu", "memory") if self.rootless and c not in self.controllers]
        if missing:
            return (
                f"the {' and '.join(missing)} cgroup controller is not delegated to this user: "
                "Podman ignores that limit"
            )
        return None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def short_tag(tag: str) -> str:
    """A tag as Docker shows it: ``localhost/NAME:TAG`` (no registry) and
    ``docker.io/[library/]NAME:TAG`` (Podman's full names) are ``NAME:TAG``."""
    for prefix in (LOCAL_PREFIX, "docker.io/library/", "docker.io/"):
        if tag.startswith(prefix):
            return tag.removeprefix(prefix)
    return tag


def short_tags(record: ImageRecord) -> ImageRecord:
    """The record with its tags as specs name them (`short_tag`)."""
    return msgspec.structs.replace(record, tags=[short_tag(tag) for tag in record.tags])


def docker_event(raw: dict[str, Any]) -> dict[str, Any]:
    """A Podman event worded as Docker's: "remove" is "destroy", a die's exit code
    ``exitCode``."""
    event = dict(raw)
    if event.get("Action") == "remove" or event.get("status") == "remove":
        event["Action"] = event["status"] = "destroy"
    actor = event.get("Actor")
    if isinstance(actor, dict) and isinstance(actor.get("Attributes"), dict):
        attributes = dict(actor["Attributes"])
        died = event.get("Action") == "die"  # Podman words every event with an exit code
        if died and "exitCode" not in attributes and "containerExitCode" in attributes:
            attributes["exitCode"] = attributes["containerExitCode"]
        event["Actor"] = {**actor, "Attributes": attributes}
    return event


def config_changes(config: dict[str, Any]) -> list[str]:
    """A commit's config (`commit_config`) as the Dockerfile instructions that set it."""
    quoted = json.dumps
    changes = [f"LABEL {quoted(k)}={quoted(v)}" for k, v in sorted(config["Labels"].items())]
    changes += [f"ENTRYPOINT {quoted(config['Entrypoint'])}", f"CMD {quoted(config['Cmd'])}"]
    for pair in config["Env"]:
        name, _, value = pair.partition("=")
        changes.append(f"ENV {name}={quoted(value)}")
    changes.append(f"WORKDIR {config['WorkingDir'] or '/'}")
    if config["User"]:
        changes.append(f"USER {config['User']}")
    return changes


def padded_stamps(data: bytes) -> bytes:
    """Log lines stamped in whole seconds, stamped in nanoseconds as Docker does."""
    return _WHOLE_SECOND_STAMP.sub(rb"\1.000000000Z ", data)


async def folder_stat(
    docker: aiodocker.Docker, name: str, sandbox_id: str, path: str, seconds: float
) -> bool | None:
    """Whether `path` of container `name` is a folder; None if it does not exist. (A HEAD of
    the archive API: aiodocker cannot read its error, which has no body.)"""
    with engine_call(f"looking at {path} in sandbox {sandbox_id}", seconds):
        await docker._check_version()
        url = docker._canonicalize_url(f"containers/{name}/archive")
        async with docker.session.head(url, params={"path": path}) as response:
            status, stat = response.status, response.headers.get(PATH_STAT, "")
    if status == 404:
        return None
    if status != 200:
        raise SandboxFailed(f"looking at {path} in sandbox {sandbox_id}: engine answered {status}")
    try:
        return bool(json.loads(base64.b64decode(stat)).get("isDir"))
    except (ValueError, AttributeError) as exc:
        raise ProtocolError(f"the engine described {path} unreadably: {stat!r}") from exc


class PodmanExecStream(ExecStream):
    """An exec's stream as Podman tells a process that never started (see the rules)."""

    def never_ran(self) -> bool:
        """It ended with a refusal's exit code, and its stderr opened with the refusal."""
        execution = self._execution
        return (
            execution.ended
            and execution.exit_code in REFUSED_CODES
            and _REFUSAL.match(bytes(self._head)) is not None
        )

    def _keep(self, message: Any) -> None:
        # Podman writes the runtime's refusal on stderr (Docker on stdout): keep its start.
        if message.stream == 2 and len(self._head) < START_FAILURE_TEXT:
            self._head += message.data[: START_FAILURE_TEXT - len(self._head)]


class PodmanEngine(DockerEngine):
    """The engine-wide part of the Docker runtime, for Podman: its events and image names."""

    EVENT_NAMES = PODMAN_EVENTS
    exec_stream = PodmanExecStream

    def __init__(self, docker: aiodocker.Docker, host_id: str, bounds: Bounds) -> None:
        super().__init__(docker, host_id, bounds)
        self._host: PodmanHost | None = None

    async def podman_host(self) -> PodmanHost:
        """What this Podman can do on its host (read once)."""
        if self._host is None:
            with engine_call("reading Podman's host facts", self.bounds.control):
                info = await self.docker._query_json("libpod/info", timeout=None)
            self._host = PodmanHost.from_info(info if isinstance(info, dict) else {})
        return self._host

    def engine_event(self, raw: dict[str, Any], default_uid: int) -> EngineEvent | None:
        """Podman's event translated to Docker's words, then typed as Docker's."""
        return super().engine_event(docker_event(raw), default_uid)

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
        """Docker's commit, its config said again as Dockerfile changes (Podman ignores the
        config a commit carries, but applies its changes); where this Podman cannot freeze a
        sandbox, it is committed running."""
        attrs: dict[str, Any] = container._container
        source = await self.inspect_raw(str(attrs.get("Image", "")))
        config = commit_config(attrs, source.get("Config") or {})
        config["Labels"].update(labels)
        image_id = await super().commit(
            container,
            sandbox_id,
            repository=repository,
            tag=tag,
            message=message,
            changes=[*config_changes(config), *changes],
            labels=labels,
            pause=pause and (await self.podman_host()).pause_problem() is None,
        )
        # Podman answers a bare id where Docker (and Podman's own image inspect) say sha256:ID.
        return image_id if image_id.startswith("sha256:") else f"sha256:{image_id}"

    async def local_images(self) -> list[str]:
        """Tags of the local images, as specs name them."""
        return sorted({short_tag(tag) for tag in await super().local_images()})

    async def inspect(self, image: str) -> ImageRecord:
        """One image, its tags as specs name them."""
        return short_tags(await super().inspect(image))

    async def disk_usage(self) -> DiskUsage:
        """The disk-usage report, its images' tags as specs name them."""
        usage = await super().disk_usage()
        return DiskUsage(
            images=[short_tags(image) for image in usage.images], layers_size=usage.layers_size
        )


NO_ARCHIVES = (
    "the Podman runtime does not move image archives (its export did not load back through "
    "its Docker API): checkpoints stay on the Podman host that made them"
)


class PodmanRuntime(DockerRuntime):
    """The `ContainerRuntime` of one Podman service (its Docker-compatible API socket)."""

    def __init__(
        self, docker: aiodocker.Docker, host_id: str, *, bounds: Bounds | None = None
    ) -> None:
        super().__init__(docker, host_id, bounds=bounds)
        self.engine: PodmanEngine = PodmanEngine(docker, host_id, self.bounds)
        self._limits_logged = False

    async def create(self, sandbox_id: str, spec: SandboxSpec, owner: str, uid: int) -> SandboxInfo:
        """Docker's create; the first one on a host that cannot enforce limits logs why. A
        network policy is refused: this runtime does not enforce one (docs/podman.md)."""
        if isinstance(spec.network, NetworkPolicy):
            raise BadRequest(
                f"sandbox {sandbox_id} asks for a network policy, which the Podman runtime does "
                "not enforce (rootless Podman's network namespaces are not the agent's to load "
                "rules into): use the Docker runtime, or network=False/True"
            )
        if not self._limits_logged:
            problem = (await self.engine.podman_host()).limit_problem()
            self._limits_logged = True
            if problem is not None:
                log.warning("sandbox limits are not enforced: %s", problem)
        return await super().create(sandbox_id, spec, owner, uid)

    async def export_image(self, reference: str) -> AsyncGenerator[bytes, None]:
        """Refused: Podman's archive of an image did not load back through its own Docker
        API here, so a checkpoint is not copied to or from a Podman host (docs/podman.md)."""
        raise BadRequest(f"cannot export image {reference}: {NO_ARCHIVES}")
        yield b""  # pragma: no cover - makes this an async generator, as the seam says

    async def load_image(self, archive: AsyncIterator[bytes], *, only: str) -> None:
        """Refused, as `export_image` is."""
        raise BadRequest(f"cannot load an image archive: {NO_ARCHIVES}")

    async def pause(self, sandbox_id: str) -> None:
        """Docker's pause, or `BadRequest` where this Podman has no freezer."""
        await self._check_pausable(sandbox_id)
        await super().pause(sandbox_id)

    async def resume(self, sandbox_id: str) -> None:
        """Docker's resume, or `BadRequest` where this Podman has no freezer."""
        await self._check_pausable(sandbox_id)
        await super().resume(sandbox_id)

    async def _check_pausable(self, sandbox_id: str) -> None:
        await self.inspect(sandbox_id)  # `SandboxNotFound` first, as on Docker
        problem = (await self.engine.podman_host()).pause_problem()
        if problem is not None:
            raise BadRequest(f"sandbox {sandbox_id} cannot be paused: {problem}")

    async def put_archive(self, sandbox_id: str, path: str, chunks: AsyncIterator[bytes]) -> None:
        """Docker's upload, once `path` is known to be a folder (Podman would make it)."""
        await self._container(sandbox_id)
        name = container_name(self.host_id, sandbox_id)
        is_folder = await folder_stat(self.docker, name, sandbox_id, path, self.bounds.control)
        if is_folder is None:
            raise FileNotFound(f"{path}: no such folder in sandbox {sandbox_id}")
        if not is_folder:
            raise BadRequest(f"{path} is not a folder in sandbox {sandbox_id}: cannot unpack there")
        await super().put_archive(sandbox_id, path, chunks)

    async def logs(
        self, sandbox_id: str, *, follow: bool, tail: int | None, since: float, timestamps: bool
    ) -> AsyncGenerator[OutputChunk, None]:
        """Docker's log reader, its stamps padded to nanoseconds."""
        chunks = super().logs(
            sandbox_id, follow=follow, tail=tail, since=since, timestamps=timestamps
        )
        async with contextlib.aclosing(chunks) as source:
            async for chunk in source:
                if timestamps:
                    chunk = OutputChunk(chunk.stream, padded_stamps(chunk.data))
                yield chunk


__all__ = ["PodmanEngine", "PodmanExecStream", "PodmanHost", "PodmanRuntime"]
