"""The Docker runtime: containers, exec streams and archives through the Engine API (aiodocker).

Rules:
- Every engine call goes through `_engine`: it is bounded (`Bounds`) and its failures become
  our tree; nothing foreign leaves this module.
- Containers are found by label, never by guessing names, so several agents can share one
  engine (each manages only the containers labelled with its host id).
- A request the engine could never carry out here is refused before anything is made: a
  `disk` limit on an engine that cannot enforce one is `BadRequest`, not the engine's 500.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import anyio
from aiodocker.exceptions import DockerError

from rock_core._errors import (
    AlreadyExists,
    BadRequest,
    EngineUnavailable,
    ImageNotFound,
    RockError,
    SandboxFailed,
    SandboxNotFound,
    TimedOut,
    TransportError,
)
from rock_core._protocol import SandboxInfo, SandboxSpec

from . import _archive
from ._engine import (
    Bounds,
    disk_limit_problem,
    engine_call,
    engine_errors,
    open_docker,
)
from ._exec_stream import ExecStream, Execution, start_failure
from ._labels import (
    LABEL_CREATED,
    LABEL_HOST,
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_OWNER_UID,
    LABEL_SANDBOX,
    LABEL_SPEC,
    LABEL_SPEC_JSON,
    owner_uid,
    sandbox_info,
    spec_digest,
    spec_label,
    split_owner_key,
)

# What a normal shell needs; Docker's default set minus MKNOD, NET_RAW, SETFCAP, SETPCAP.
CAPABILITIES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "AUDIT_WRITE",
]
KEEPALIVE = ["sleep", "2147483647"]
PULL_POLICIES = ("missing", "never", "always")
MOUNTINFO = Path("/proc/self/mountinfo")


def engine_host_config(spec: SandboxSpec) -> dict[str, Any]:
    """The Engine API `HostConfig` of a sandbox: its limits and its safe defaults."""
    return {
        "Init": True,
        "NanoCpus": int(spec.cpus * 1e9),
        "Memory": spec.memory,
        "MemorySwap": spec.memory,
        "PidsLimit": spec.pids,
        "Privileged": False,
        "CapDrop": ["ALL"],
        "CapAdd": CAPABILITIES,
        "SecurityOpt": ["no-new-privileges"],
        "NetworkMode": "bridge" if spec.network else "none",
    }


def container_name(host_id: str, sandbox_id: str) -> str:
    """The engine-level name of a sandbox's container; the engine refuses a second one."""
    return f"rock-{host_id}-{sandbox_id}"


class DockerRuntime:
    """Drives one Docker engine for one agent (one host id)."""

    def __init__(
        self, docker: aiodocker.Docker, host_id: str, *, bounds: Bounds | None = None
    ) -> None:
        self.docker = docker
        self.host_id = host_id
        self.bounds = bounds or Bounds()
        self.extra_labels: dict[str, str] = {}  # added to every container this runtime makes
        self.uid = os.getuid()  # the owner's uid of containers from agents that did not label it
        self._info: dict[str, Any] | None = None  # `docker info`, once the engine answered
        self._disk_problem: tuple[str | None] | None = None  # why no disk limits, once known

    # ------------------------------------------------------------------ engine

    async def engine_info(self) -> dict[str, Any]:
        """The engine's `docker info`, read once (`EngineUnavailable` if no engine answers)."""
        if self._info is None:
            with engine_call("reading engine info", self.bounds.control):
                info = await self.docker.system.info()
            self._info = dict(info)
        return self._info

    async def engine_resources(self) -> tuple[float, int]:
        """(cpus, memory bytes) of the engine's host."""
        info = await self.engine_info()
        return float(info.get("NCPU") or 1), int(info.get("MemTotal") or 0)

    async def local_images(self) -> list[str]:
        """Tags of the images present on the engine."""
        with engine_call("listing images", self.bounds.control):
            images = await self.docker.images.list()
        return sorted(tag for image in images for tag in (image.get("RepoTags") or []) if tag)

    async def disk_limit_problem(self) -> str | None:
        """Why this engine cannot enforce a sandbox's `disk` limit; None if it can."""
        if self._disk_problem is None:
            info = await self.engine_info()
            root = str(info.get("DockerRootDir") or "")
            mountinfo = await anyio.to_thread.run_sync(self._local_mountinfo, root)
            self._disk_problem = (disk_limit_problem(info, mountinfo),)
        return self._disk_problem[0]

    async def supports_disk_limits(self) -> bool:
        """True if a `disk` limit can be enforced here (the "disk-limits" capability)."""
        return await self.disk_limit_problem() is None

    def _local_mountinfo(self, root: str) -> str | None:
        """This machine's mount table, if the engine keeps its data here (else None)."""
        if not str(self.docker.docker_host).startswith("unix://") or not os.path.isdir(root):
            return None
        try:
            return MOUNTINFO.read_text()
        except OSError:
            return None

    async def ensure_image(self, image: str, policy: str) -> None:
        """Make `image` present according to the pull policy, or raise `ImageNotFound`."""
        if policy not in PULL_POLICIES:
            raise BadRequest(f"pull policy {policy!r} is not one of {', '.join(PULL_POLICIES)}")
        try:
            await self.inspect_image(image)
            present = True
        except ImageNotFound:
            present = False
        if present and policy != "always":
            return
        if not present and policy == "never":
            raise ImageNotFound(
                f"image {image!r} is not on this host and the pull policy is 'never'", image=image
            )
        try:
            await self._pull(image)
        except (EngineUnavailable, TimedOut) as exc:
            if present and isinstance(exc, TimedOut):
                return  # 'always' but the registry stalls: the local copy will do
            raise
        except RockError as exc:
            if present:
                return  # 'always' but the registry is unreachable: the local copy will do
            raise ImageNotFound(
                f"image {image!r} is not on this host and could not be pulled: {exc}",
                image=image,
            ) from exc

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

    # ------------------------------------------------------------------ containers

    def _config(self, sandbox_id: str, spec: SandboxSpec, owner: str, uid: int) -> dict[str, Any]:
        labels = {
            **spec.labels,
            LABEL_MANAGED: "1",
            LABEL_HOST: self.host_id,
            LABEL_SANDBOX: sandbox_id,
            LABEL_OWNER: owner,
            LABEL_OWNER_UID: str(uid),
            LABEL_CREATED: f"{time.time():.3f}",
            LABEL_SPEC: spec_digest(spec),
            LABEL_SPEC_JSON: spec_label(spec),
            **self.extra_labels,
        }
        host_config = engine_host_config(spec)
        if spec.disk:
            host_config["StorageOpt"] = {"size": spec.disk}
        config: dict[str, Any] = {
            "Image": spec.image,
            "Entrypoint": KEEPALIVE,
            "Cmd": [],
            "Labels": labels,
            "Env": [f"{k}={v}" for k, v in spec.env.items()],
            "HostConfig": host_config,
            "Hostname": sandbox_id[:63],
        }
        if spec.workdir:
            config["WorkingDir"] = spec.workdir
        if spec.user:
            config["User"] = spec.user
        return config

    async def create(self, sandbox_id: str, spec: SandboxSpec, owner: str, uid: int) -> SandboxInfo:
        """Create and start the sandbox's container; a retry with the same spec is a no-op.

        Sandbox ids are names on the host: another owner's id is `AlreadyExists`, never theirs.
        A spec this engine cannot honour is `BadRequest` before anything is made.
        """
        if spec.disk:
            problem = await self.disk_limit_problem()
            if problem is not None:
                raise BadRequest(f"sandbox {sandbox_id} asks for disk={spec.disk!r}: {problem}")
        name = container_name(self.host_id, sandbox_id)
        config = self._config(sandbox_id, spec, owner, uid)
        existing = await self._find(sandbox_id)
        if existing is not None:
            return await self._adopt_existing(existing, sandbox_id, spec, owner, uid)
        await self.ensure_image(spec.image, spec.pull)
        container = await self._create_container(sandbox_id, config, name)
        if container is None:
            # Lost a race with a concurrent create of the same id: answer with that one.
            found = await self._find(sandbox_id)
            if found is None:
                raise AlreadyExists(
                    f"sandbox id {sandbox_id!r} is taken on host {self.host_id}: a container "
                    f"this agent does not manage is named {name}",
                    sandbox_id=sandbox_id,
                )
            return await self._adopt_existing(found, sandbox_id, spec, owner, uid)
        try:
            with engine_call(f"starting sandbox {sandbox_id}", self.bounds.create):
                await container.start()
        except RockError as exc:
            with anyio.CancelScope(shield=True):
                await self._discard(container, sandbox_id)
            if isinstance(exc, TransportError | TimedOut):
                raise
            head = f"sandbox {sandbox_id} did not start"
            raise (start_failure(str(exc), head) or SandboxFailed(f"{head}: {exc}")) from exc
        return await self.inspect(sandbox_id)

    async def _create_container(self, sandbox_id: str, config: dict[str, Any], name: str) -> Any:
        """The new container; None if one of that name exists already."""
        with engine_call(
            f"creating sandbox {sandbox_id}", self.bounds.create, not_found=ImageNotFound
        ):
            try:
                return await self.docker.containers.create(config, name=name)
            except DockerError as exc:
                if exc.status == 409:
                    return None
                raise

    async def _discard(self, container: Any, sandbox_id: str) -> None:
        """Remove a container that failed to start; a failure is left to the reaper."""
        with contextlib.suppress(RockError):
            with engine_call(f"removing sandbox {sandbox_id}", self.bounds.remove):
                await container.delete(force=True, v=True)

    async def _adopt_existing(
        self, container: Any, sandbox_id: str, spec: SandboxSpec, owner: str, uid: int
    ) -> SandboxInfo:
        labels = container["Labels"] or {}
        if (labels.get(LABEL_OWNER), owner_uid(labels, self.uid)) != (owner, uid):
            raise AlreadyExists(
                f"sandbox id {sandbox_id!r} is taken on host {self.host_id} by another owner: "
                "choose another id",
                sandbox_id=sandbox_id,
            )
        if labels.get(LABEL_SPEC) != spec_digest(spec):
            raise AlreadyExists(
                f"sandbox {sandbox_id} already exists with a different spec", sandbox_id=sandbox_id
            )
        info = await self.inspect(sandbox_id)
        if info.state != "running":
            await self.start(sandbox_id)
            info = await self.inspect(sandbox_id)
        return info

    async def _find(self, sandbox_id: str) -> Any:
        with engine_call(f"looking for sandbox {sandbox_id}", self.bounds.control):
            found = await self.docker.containers.list(
                all=True,
                filters=json.dumps(
                    {"label": [f"{LABEL_HOST}={self.host_id}", f"{LABEL_SANDBOX}={sandbox_id}"]}
                ),
            )
        return found[0]._container if found else None

    async def _container(self, sandbox_id: str) -> Any:
        with engine_call(f"inspecting sandbox {sandbox_id}", self.bounds.control):
            return await self.docker.containers.get(container_name(self.host_id, sandbox_id))

    async def inspect(self, sandbox_id: str) -> SandboxInfo:
        """The engine's view of one sandbox."""
        container = await self._container(sandbox_id)
        return sandbox_info(container._container, self.uid)

    async def list_sandboxes(self, owner: str = "") -> list[SandboxInfo]:
        """Every sandbox of this host, or of one owner (an `owner_key`: uid and owner)."""
        labels = [f"{LABEL_HOST}={self.host_id}"]
        uid = None
        if owner:
            uid, name = split_owner_key(owner)
            labels.append(f"{LABEL_OWNER}={name}")
        with engine_call("listing sandboxes", self.bounds.control):
            found = await self.docker.containers.list(
                all=True, filters=json.dumps({"label": labels})
            )
        infos = [sandbox_info(c._container, self.uid) for c in found]
        return [i for i in infos if uid is None or i.owner_uid == uid]

    async def start(self, sandbox_id: str) -> None:
        """Start a stopped sandbox's container."""
        container = await self._container(sandbox_id)
        with engine_call(f"starting sandbox {sandbox_id}", self.bounds.create):
            await container.start()

    async def stop(self, sandbox_id: str, timeout: float) -> None:
        """Stop the container (its files stay): SIGTERM, then SIGKILL after `timeout` s."""
        container = await self._container(sandbox_id)
        grace = max(0, int(timeout))
        with engine_call(f"stopping sandbox {sandbox_id}", grace + self.bounds.stop_margin):
            await container.stop(t=grace)

    async def remove(self, sandbox_id: str) -> None:
        """Remove the container; an already removed one is not an error here."""
        try:
            container = await self._container(sandbox_id)
        except SandboxNotFound:
            return
        with engine_call(f"removing sandbox {sandbox_id}", self.bounds.remove):
            try:
                await container.delete(force=True, v=True)
            except DockerError as exc:
                if exc.status == 404:
                    return
                if exc.status == 409 and "already in progress" in str(exc.message):
                    return
                raise

    # ------------------------------------------------------------------ processes

    async def open_exec(
        self,
        sandbox_id: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str = "",
        stdin: bool = True,
    ) -> tuple[Execution, ExecStream]:
        """Start an attached process; returns (execution, stream) for reading and writing it.

        A process the runtime cannot start (no such working folder, program or user) ends its
        stream with the error naming that cause (see `ExecStream`).
        """
        container = await self._container(sandbox_id)
        with engine_call(f"starting a process in sandbox {sandbox_id}", self.bounds.control):
            raw = await container.exec(
                argv,
                stdin=stdin,
                stdout=True,
                stderr=True,
                tty=False,
                environment=[f"{k}={v}" for k, v in (env or {}).items()] or None,
                workdir=cwd or None,
            )
            attached = raw.start(detach=False)
            try:
                await attached._init()
            except BaseException:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await attached.close()
                raise
        execution = Execution(raw, sandbox_id, argv[0], self.bounds.control)
        return execution, ExecStream(execution, attached)

    async def exec_pid(self, execution: Execution) -> tuple[int, int | None, bool]:
        """(host pid, exit code, running) of an exec."""
        return await execution.state()

    async def wait_exit(self, execution: Execution, *, tries: int = 50) -> int | None:
        """The exit code of an exec whose streams have ended (the engine may lag a moment)."""
        return await execution.wait_exit(tries)

    async def close_input(self, stream: ExecStream) -> None:
        """Half-close an attached exec stream: the process sees end-of-file on its stdin."""
        with contextlib.suppress(Exception):
            await _close_write(stream.raw)

    async def close_stream(self, stream: ExecStream) -> None:
        """Close an attached exec stream (the process may go on; its output is dropped)."""
        with contextlib.suppress(Exception):
            await stream.close()

    async def get_archive(self, sandbox_id: str, path: str) -> AsyncGenerator[bytes, None]:
        """Stream `path` out of the sandbox as a tar archive (see `_archive`)."""
        await self._container(sandbox_id)
        archive = _archive.get_archive(
            self.docker, container_name(self.host_id, sandbox_id), sandbox_id, path
        )
        with engine_errors(f"reading {path} from sandbox {sandbox_id}"):
            # Closed here, on every exit, not whenever the garbage collector gets to it.
            async with contextlib.aclosing(archive) as chunks:
                async for chunk in chunks:
                    yield chunk

    async def put_archive(self, sandbox_id: str, path: str, chunks: AsyncIterator[bytes]) -> None:
        """Unpack a tar stream into folder `path` of the sandbox (see `_archive`)."""
        await self._container(sandbox_id)
        with engine_errors(f"writing to {path} in sandbox {sandbox_id}"):
            await _archive.put_archive(
                self.docker, container_name(self.host_id, sandbox_id), sandbox_id, path, chunks
            )

    # ------------------------------------------------------------------ images, commit, stats

    async def disk_usage(self) -> dict[str, Any]:
        """The engine's disk-usage report: every image with its shared size, and the layers' total.

        The engine also measures every container's writable layer for this report.
        """
        with engine_call("reading the engine's disk usage", self.bounds.disk_usage):
            report: dict[str, Any] = await self.docker._query_json("system/df", timeout=None)
        return report

    async def data_root(self) -> str:
        """The engine's data folder (`DockerRootDir`), where image layers live."""
        return str((await self.engine_info()).get("DockerRootDir") or "")

    async def all_containers(self) -> list[dict[str, Any]]:
        """Every container of the engine, any owner and any state (summaries)."""
        with engine_call("listing containers", self.bounds.control):
            found = await self.docker.containers.list(all=True)
        return [c._container for c in found]

    async def inspect_image(self, image: str) -> dict[str, Any]:
        """The engine's view of one image; a missing one raises `ImageNotFound`."""
        with engine_call(f"image {image}", self.bounds.control, not_found=ImageNotFound):
            found: dict[str, Any] = await self.docker.images.inspect(image)
        return found

    async def remove_image(self, reference: str) -> None:
        """Remove one tag (the image goes with its last tag), never forced: used images stay."""
        with engine_call(
            f"removing image {reference}", self.bounds.remove, not_found=ImageNotFound
        ):
            await self.docker.images.delete(reference, force=False)

    async def inspect_container(self, sandbox_id: str) -> dict[str, Any]:
        """The engine's full inspect record of a sandbox's container."""
        container = await self._container(sandbox_id)
        attrs: dict[str, Any] = container._container
        return attrs

    async def commit(
        self,
        sandbox_id: str,
        *,
        repository: str,
        tag: str,
        message: str,
        changes: list[str],
        config: dict[str, Any],
        pause: bool,
    ) -> str:
        """Save the sandbox's file system as image `repository:tag`; return the image id."""
        container = await self._container(sandbox_id)
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

    async def stats(self, sandbox_id: str) -> dict[str, Any]:
        """One stats reading of a sandbox (the engine compares it with one a second earlier)."""
        container = await self._container(sandbox_id)
        what = f"reading the resource use of sandbox {sandbox_id}"
        with engine_call(what, self.bounds.stats):
            readings = await container.stats(stream=False, timeout=None)
        if not readings or not isinstance(readings[0], dict):
            raise SandboxFailed(f"the engine returned no stats for sandbox {sandbox_id}")
        reading: dict[str, Any] = readings[0]
        return reading

    # ------------------------------------------------------------------ events

    async def events(self, since: float) -> AsyncIterator[dict[str, Any]]:
        """Start, die and destroy events of this host's containers from `since` (unix time) on.

        The engine replays the events since then, then streams new ones as they happen.
        """
        filters = {
            "type": ["container"],
            "label": [f"{LABEL_HOST}={self.host_id}"],
            "event": ["start", "die", "destroy"],
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
                        event: dict[str, Any] = json.loads(line)
                    except ValueError as exc:
                        raise TransportError(f"the engine sent an unreadable event: {exc}") from exc
                    yield event


async def _close_write(stream: Any) -> None:
    """Half-close an attached exec stream so the process sees end-of-file on stdin."""
    resp = stream._resp
    if resp is None:
        return
    conn = resp.connection
    if conn is not None and conn.transport is not None and conn.transport.can_write_eof():
        conn.transport.write_eof()


__all__ = ["DockerRuntime", "container_name", "engine_host_config", "open_docker"]
