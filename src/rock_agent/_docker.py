"""The Docker runtime: the `ContainerRuntime` of one engine, through its API (aiodocker).

Sandboxes, processes, archives and connections are here; what spans the engine (its facts,
images, commits, stats, events) is `_docker_engine`'s; the JSON both ways is `_docker_json`'s.

Rules:
- Every engine call goes through `_engine`: it is bounded (`Bounds`) and its failures become
  our tree; nothing foreign leaves this module, and no engine JSON: only `_runtime`'s values.
- Containers are found by label, never by guessing names, so several agents can share one
  engine (each manages only the containers labelled with its host id).
- A request the engine could never carry out here is refused before anything is made: a
  `disk` limit on an engine that cannot enforce one is `BadRequest`, not the engine's 500.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import aiodocker
import anyio
from aiodocker.exceptions import DockerError
from anyio.abc import ByteStream

from rock_core import (
    AlreadyExists,
    BadRequest,
    ImageNotFound,
    RockError,
    SandboxFailed,
    SandboxNotFound,
    TimedOut,
    TransportError,
)
from rock_core.protocol import SandboxInfo, SandboxSpec

from . import _archive, _docker_images, _docker_logs
from ._docker_engine import DockerEngine
from ._docker_engine_calls import DockerEngineCalls
from ._docker_json import (
    KEEPALIVE,
    container_config,
    container_detail,
    container_summary,
    engine_host_config,
    sandbox_info,
)
from ._docker_netpol import NetworkPolicing
from ._docker_pause import set_paused
from ._engine import Bounds, engine_call, engine_errors, made_anyway, open_docker
from ._exec_stream import DockerProcess, start_process
from ._labels import (
    LABEL_HOST,
    LABEL_OWNER,
    LABEL_SANDBOX,
    adoption_problem,
    sandbox_labels,
    split_owner_key,
)
from ._listeners import SocketPortListener, listen_inside
from ._netns import connect_inside
from ._runtime import (
    ContainerDetail,
    ContainerSummary,
    OutputChunk,
    StatsReading,
)
from ._start_failure import not_running, start_failure


def container_name(host_id: str, sandbox_id: str) -> str:
    """The engine-level name of a sandbox's container; the engine refuses a second one."""
    return f"rock-{host_id}-{sandbox_id}"


class DockerRuntime(DockerEngineCalls, _docker_images.DockerImageArchives, NetworkPolicing):
    """The `ContainerRuntime` of one Docker engine, for one agent (one host id)."""

    def __init__(
        self, docker: aiodocker.Docker, host_id: str, *, bounds: Bounds | None = None
    ) -> None:
        self.docker = docker
        self.host_id = host_id
        self.bounds = bounds or Bounds()
        self.engine = DockerEngine(docker, host_id, self.bounds)  # beyond one sandbox
        self.extra_labels: dict[str, str] = {}  # added to every container this runtime makes
        self.uid = os.getuid()  # the owner's uid of containers from agents that did not label it

    # ------------------------------------------------------------------ containers

    def _config(self, sandbox_id: str, spec: SandboxSpec, owner: str, uid: int) -> dict[str, Any]:
        labels = sandbox_labels(self, sandbox_id, spec, owner=owner, uid=uid, now=time.time())
        return container_config(sandbox_id, spec, labels)

    async def create(self, sandbox_id: str, spec: SandboxSpec, owner: str, uid: int) -> SandboxInfo:
        """Create and start the sandbox's container; a retry with the same spec is a no-op.

        Sandbox ids are names on the host: another owner's id is `AlreadyExists`, never theirs.
        A spec this engine cannot honour is `BadRequest` before anything is made.
        """
        if spec.disk:
            problem = await self.engine.disk_limit_problem()
            if problem is not None:
                raise BadRequest(f"sandbox {sandbox_id} asks for disk={spec.disk!r}: {problem}")
        name = container_name(self.host_id, sandbox_id)
        config = self._config(sandbox_id, spec, owner, uid)
        existing = await self._find(sandbox_id)
        if existing is not None:
            return await self._adopt_existing(existing, sandbox_id, spec, owner, uid)
        await self.ensure_image(spec.image, spec.pull)
        container = await made_anyway(
            functools.partial(self._create_container, sandbox_id, config, name),
            functools.partial(self._discard, sandbox_id=sandbox_id),
        )
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
            try:
                with engine_call(f"starting sandbox {sandbox_id}", self.bounds.create):
                    await container.start()
            except RockError as exc:
                if isinstance(exc, TransportError | TimedOut):
                    raise
                head = f"sandbox {sandbox_id} did not start"
                raise (start_failure(str(exc), head) or SandboxFailed(f"{head}: {exc}")) from exc
            await self.network.enforce(
                sandbox_id, lambda: self._discard(container, sandbox_id), spec
            )
            return await self.inspect(sandbox_id)
        except BaseException:  # failed, or its caller is gone: nothing is left behind
            with anyio.CancelScope(shield=True):
                await self._discard(container, sandbox_id)
            raise

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
        """Remove a container that failed to start, or whose caller is gone (None: nothing was
        made); a failure is left to the reaper."""
        if container is None:
            return
        with contextlib.suppress(RockError):
            with engine_call(f"removing sandbox {sandbox_id}", self.bounds.remove):
                await container.delete(force=True, v=True)

    async def _adopt_existing(
        self, container: Any, sandbox_id: str, spec: SandboxSpec, owner: str, uid: int
    ) -> SandboxInfo:
        problem = adoption_problem(
            self, container["Labels"] or {}, sandbox_id, spec, owner=owner, uid=uid
        )
        if problem is not None:
            raise problem
        info = await self.inspect(sandbox_id)
        if info.state not in ("running", "paused"):
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

    async def container(self, sandbox_id: str) -> ContainerDetail:
        """The engine's full inspect record of a sandbox's container, typed."""
        return container_detail((await self._container(sandbox_id))._container)

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
        await self.network.enforce(sandbox_id, functools.partial(self.stop, sandbox_id, 0))

    async def stop(self, sandbox_id: str, timeout: float) -> None:
        """Stop the container (its files stay): SIGTERM, then SIGKILL after `timeout` s; a
        paused one is resumed first, so its processes can take their SIGTERM."""
        container = await self._container(sandbox_id)
        grace = max(0, int(timeout))
        with engine_call(f"stopping sandbox {sandbox_id}", grace + self.bounds.stop_margin):
            if (container._container.get("State") or {}).get("Paused"):
                await container.unpause()
            await container.stop(t=grace)

    async def pause(self, sandbox_id: str) -> None:
        """Freeze the container (the engine's freezer; `_docker_pause`)."""
        name = container_name(self.host_id, sandbox_id)
        await set_paused(self.docker, name, sandbox_id, paused=True, seconds=self.bounds.control)

    async def resume(self, sandbox_id: str) -> None:
        """Thaw the container."""
        name = container_name(self.host_id, sandbox_id)
        await set_paused(self.docker, name, sandbox_id, paused=False, seconds=self.bounds.control)

    async def remove(self, sandbox_id: str) -> None:
        """Remove the container; an already removed one is not an error here."""
        await self.network.forget(sandbox_id)
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

    async def exec(
        self,
        sandbox_id: str,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str = "",
        stdin: bool = True,
        terminal: tuple[int, int] | None = None,
    ) -> DockerProcess:
        """Start an attached process (on a terminal of (rows, cols) with `terminal`); one the
        runtime cannot start ends its stream with the error naming the cause (`ExecStream`)."""
        container = await self._container(sandbox_id)
        return await start_process(
            container,
            sandbox_id,
            argv,
            env=env,
            cwd=cwd,
            stdin=stdin,
            bound=self.bounds.control,
            terminal=terminal,
            stream_type=self.engine.exec_stream,
        )

    async def connect(self, sandbox_id: str, address: str, port: int) -> ByteStream:
        """A TCP stream to `address:port` inside the sandbox's network namespace (`_netns`)."""
        detail = await self.container(sandbox_id)
        if not detail.running or detail.pid <= 0:
            raise not_running(sandbox_id, detail.status, "start it before forwarding a port")
        return await connect_inside(sandbox_id, detail.pid, address, port)

    async def listen(self, sandbox_id: str, address: str, port: int) -> SocketPortListener:
        """A listener on `address:port` inside the sandbox's network namespace (`_listeners`)."""
        detail = await self.container(sandbox_id)
        if not detail.running or detail.pid <= 0:
            raise not_running(sandbox_id, detail.status, "start it before exposing a host port")
        return await listen_inside(sandbox_id, detail.pid, address, port)

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

    async def all_containers(self) -> list[ContainerSummary]:
        """Every container of the engine, any owner and any state (summaries)."""
        with engine_call("listing containers", self.bounds.control):
            found = await self.docker.containers.list(all=True)
        return [container_summary(c._container) for c in found]

    async def commit(
        self,
        sandbox_id: str,
        *,
        repository: str,
        tag: str,
        message: str,
        changes: list[str],
        labels: Mapping[str, str],
        pause: bool,
    ) -> str:
        """Save the sandbox's file system as image `repository:tag`; return the image id."""
        container = await self._container(sandbox_id)
        return await self.engine.commit(
            container,
            sandbox_id,
            repository=repository,
            tag=tag,
            message=message,
            changes=changes,
            labels=labels,
            pause=pause,
        )

    async def stats(self, sandbox_id: str) -> StatsReading:
        """One stats reading of a sandbox (the engine compares it with one a second earlier)."""
        return await self.engine.stats(await self._container(sandbox_id), sandbox_id)

    def logs(
        self, sandbox_id: str, *, follow: bool, tail: int | None, since: float, timestamps: bool
    ) -> AsyncGenerator[OutputChunk, None]:
        """The sandbox's container log, through the engine's logs API (`_docker_logs`)."""
        find = functools.partial(self._container, sandbox_id)
        return _docker_logs.read_logs(
            self.docker, find, sandbox_id, follow, tail, since, timestamps
        )


__all__ = [
    "KEEPALIVE",
    "DockerRuntime",
    "container_name",
    "engine_host_config",
    "open_docker",
]
