"""The Docker runtime: containers, exec streams and archives through the Engine API (aiodocker).

Every aiodocker/aiohttp error is translated here into the `RockError` tree; nothing foreign
leaves this module. Containers are found by label, never by guessing names, so several agents
can share one engine (each manages only the containers labelled with its host id).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiodocker
import aiohttp
import anyio
from aiodocker.exceptions import DockerError

from rock_core._errors import (
    AlreadyExists,
    BadRequest,
    ImageNotFound,
    RockError,
    SandboxFailed,
    SandboxNotFound,
    TransportError,
)
from rock_core._protocol import SandboxInfo, SandboxSpec

from . import _archive
from ._engine import engine_errors
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
    spec_digest,
    spec_from_labels,
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
REMOVE_TIMEOUT = 60.0


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

    def __init__(self, docker: aiodocker.Docker, host_id: str) -> None:
        self.docker = docker
        self.host_id = host_id
        self.extra_labels: dict[str, str] = {}  # added to every container this runtime makes
        self.uid = os.getuid()  # the owner's uid of containers from agents that did not label it

    # ------------------------------------------------------------------ engine

    async def engine_resources(self) -> tuple[float, int]:
        """(cpus, memory bytes) of the engine's host."""
        with engine_errors("reading engine info"):
            info = await self.docker.system.info()
        return float(info.get("NCPU", 1)), int(info.get("MemTotal", 0))

    async def local_images(self) -> list[str]:
        """Tags of the images present on the engine."""
        with engine_errors("listing images"):
            images = await self.docker.images.list()
        return sorted(tag for image in images for tag in (image.get("RepoTags") or []) if tag)

    async def ensure_image(self, image: str, policy: str) -> None:
        """Make `image` present according to the pull policy, or raise `ImageNotFound`."""
        if policy not in PULL_POLICIES:
            raise BadRequest(f"pull policy {policy!r} is not one of {', '.join(PULL_POLICIES)}")
        present = True
        try:
            await self.docker.images.inspect(image)
        except DockerError as exc:
            if exc.status != 404:
                with engine_errors(f"inspecting image {image}"):
                    raise
            present = False
        except aiohttp.ClientError as exc:
            raise TransportError(f"cannot reach the Docker engine: {exc}") from exc
        if present and policy != "always":
            return
        if not present and policy == "never":
            raise ImageNotFound(
                f"image {image!r} is not on this host and the pull policy is 'never'", image=image
            )
        try:
            await self.docker.images.pull(image)
        except (DockerError, aiohttp.ClientError) as exc:
            if present:
                return  # 'always' but the registry is unreachable: the local copy will do
            detail = exc.message if isinstance(exc, DockerError) else str(exc)
            raise ImageNotFound(
                f"image {image!r} is not on this host and could not be pulled: {detail}",
                image=image,
            ) from exc

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

    async def create(
        self, sandbox_id: str, spec: SandboxSpec, owner: str, uid: int
    ) -> SandboxInfo:
        """Create and start the sandbox's container; a retry with the same spec is a no-op.

        Sandbox ids are names on the host: another owner's id is `AlreadyExists`, never theirs.
        """
        name = container_name(self.host_id, sandbox_id)
        config = self._config(sandbox_id, spec, owner, uid)
        existing = await self._find(sandbox_id)
        if existing is not None:
            return await self._adopt_existing(existing, sandbox_id, spec, owner, uid)
        await self.ensure_image(spec.image, spec.pull)
        try:
            container = await self.docker.containers.create(config, name=name)
        except DockerError as exc:
            if exc.status == 409:
                # Lost a race with a concurrent create of the same id: answer with that one.
                found = await self._find(sandbox_id)
                if found is not None:
                    return await self._adopt_existing(found, sandbox_id, spec, owner, uid)
            with engine_errors(f"creating sandbox {sandbox_id}", not_found=ImageNotFound):
                raise
        except aiohttp.ClientError as exc:
            raise TransportError(f"cannot reach the Docker engine: {exc}") from exc
        try:
            with engine_errors(f"starting sandbox {sandbox_id}"):
                await container.start()
        except RockError as exc:
            with contextlib.suppress(DockerError, aiohttp.ClientError):
                await container.delete(force=True)
            raise SandboxFailed(f"sandbox {sandbox_id} did not start: {exc}") from exc
        return await self.inspect(sandbox_id)

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
        with engine_errors("listing containers"):
            found = await self.docker.containers.list(
                all=True,
                filters=json.dumps(
                    {"label": [f"{LABEL_HOST}={self.host_id}", f"{LABEL_SANDBOX}={sandbox_id}"]}
                ),
            )
        return found[0]._container if found else None

    async def _container(self, sandbox_id: str) -> Any:
        with engine_errors(f"sandbox {sandbox_id}"):
            return await self.docker.containers.get(container_name(self.host_id, sandbox_id))

    async def inspect(self, sandbox_id: str) -> SandboxInfo:
        """The engine's view of one sandbox."""
        container = await self._container(sandbox_id)
        return _info(container._container, self.uid)

    async def list_sandboxes(self, owner: str = "") -> list[SandboxInfo]:
        """Every sandbox of this host, or of one owner (an `owner_key`: uid and owner)."""
        labels = [f"{LABEL_HOST}={self.host_id}"]
        uid = None
        if owner:
            uid, name = split_owner_key(owner)
            labels.append(f"{LABEL_OWNER}={name}")
        with engine_errors("listing containers"):
            found = await self.docker.containers.list(
                all=True, filters=json.dumps({"label": labels})
            )
        infos = [_summary(c._container, self.uid) for c in found]
        return [i for i in infos if uid is None or i.owner_uid == uid]

    async def start(self, sandbox_id: str) -> None:
        """Start a stopped sandbox's container."""
        container = await self._container(sandbox_id)
        with engine_errors(f"starting sandbox {sandbox_id}"):
            await container.start()

    async def stop(self, sandbox_id: str, timeout: float) -> None:
        """Stop the container (its files stay)."""
        container = await self._container(sandbox_id)
        with engine_errors(f"stopping sandbox {sandbox_id}"):
            await container.stop(t=max(0, int(timeout)))

    async def remove(self, sandbox_id: str) -> None:
        """Remove the container; an already removed one is not an error here."""
        try:
            container = await self._container(sandbox_id)
        except SandboxNotFound:
            return
        try:
            with anyio.fail_after(REMOVE_TIMEOUT):
                await container.delete(force=True, v=True)
        except TimeoutError as exc:
            raise SandboxFailed(
                f"the engine did not remove sandbox {sandbox_id} within {REMOVE_TIMEOUT:g} s"
            ) from exc
        except DockerError as exc:
            if exc.status == 404:
                return
            if exc.status == 409 and "already in progress" in str(exc.message):
                return
            with engine_errors(f"removing sandbox {sandbox_id}"):
                raise
        except aiohttp.ClientError as exc:
            raise TransportError(f"cannot reach the Docker engine: {exc}") from exc

    # ------------------------------------------------------------------ processes

    async def open_exec(
        self,
        sandbox_id: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str = "",
        stdin: bool = True,
    ) -> tuple[Any, Any]:
        """Start an attached process; returns (exec, stream) for reading and writing it."""
        container = await self._container(sandbox_id)
        with engine_errors(f"starting a process in sandbox {sandbox_id}"):
            execution = await container.exec(
                argv,
                stdin=stdin,
                stdout=True,
                stderr=True,
                tty=False,
                environment=[f"{k}={v}" for k, v in (env or {}).items()] or None,
                workdir=cwd or None,
            )
            stream = execution.start(detach=False)
            await stream._init()
        return execution, stream

    async def exec_pid(self, execution: Any) -> tuple[int, int | None, bool]:
        """(host pid, exit code, running) of an exec."""
        with engine_errors("inspecting a process"):
            info = await execution.inspect()
        return int(info.get("Pid") or 0), info.get("ExitCode"), bool(info.get("Running"))

    async def wait_exit(self, execution: Any, *, tries: int = 50) -> int | None:
        """The exit code of an exec whose streams have ended (the engine may lag a moment)."""
        exit_code: int | None = None
        for _ in range(tries):
            _, exit_code, running = await self.exec_pid(execution)
            if not running:
                return exit_code
            await anyio.sleep(0.02)
        return exit_code

    async def close_input(self, stream: Any) -> None:
        """Half-close an attached exec stream: the process sees end-of-file on its stdin."""
        with contextlib.suppress(Exception):
            await _close_write(stream)

    async def close_stream(self, stream: Any) -> None:
        """Close an attached exec stream (the process may go on; its output is dropped)."""
        with contextlib.suppress(Exception):
            await stream.close()

    async def get_archive(self, sandbox_id: str, path: str) -> AsyncGenerator[bytes, None]:
        """Stream `path` out of the sandbox as a tar archive (see `_archive`)."""
        await self._container(sandbox_id)
        async for chunk in _archive.get_archive(
            self.docker, container_name(self.host_id, sandbox_id), sandbox_id, path
        ):
            yield chunk

    async def put_archive(self, sandbox_id: str, path: str, chunks: AsyncIterator[bytes]) -> None:
        """Unpack a tar stream into folder `path` of the sandbox (see `_archive`)."""
        await self._container(sandbox_id)
        await _archive.put_archive(
            self.docker, container_name(self.host_id, sandbox_id), sandbox_id, path, chunks
        )

    # ------------------------------------------------------------------ images, commit, stats

    async def disk_usage(self) -> dict[str, Any]:
        """The engine's disk-usage report: every image with its shared size, and the layers' total.

        The engine also measures every container's writable layer for this report.
        """
        with engine_errors("reading the engine's disk usage"):
            report: dict[str, Any] = await self.docker._query_json("system/df", timeout=None)
        return report

    async def data_root(self) -> str:
        """The engine's data folder (`DockerRootDir`), where image layers live."""
        with engine_errors("reading engine info"):
            info = await self.docker.system.info()
        return str(info.get("DockerRootDir") or "")

    async def all_containers(self) -> list[dict[str, Any]]:
        """Every container of the engine, any owner and any state (summaries)."""
        with engine_errors("listing containers"):
            found = await self.docker.containers.list(all=True)
        return [c._container for c in found]

    async def inspect_image(self, image: str) -> dict[str, Any]:
        """The engine's view of one image; a missing one raises `ImageNotFound`."""
        with engine_errors(f"image {image}", not_found=ImageNotFound):
            found: dict[str, Any] = await self.docker.images.inspect(image)
        return found

    async def remove_image(self, reference: str) -> None:
        """Remove one tag (the image goes with its last tag), never forced: used images stay."""
        with engine_errors(f"removing image {reference}", not_found=ImageNotFound):
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
        with engine_errors(f"committing sandbox {sandbox_id}"):
            result = await container.commit(
                repository=repository,
                tag=tag,
                message=message or None,
                changes=changes or None,
                config=config,
                pause=pause,
                timeout=None,
            )
        return str(result["Id"])

    async def stats(self, sandbox_id: str) -> dict[str, Any]:
        """One stats reading of a sandbox (the engine compares it with one a second earlier)."""
        container = await self._container(sandbox_id)
        with engine_errors(f"reading the resource use of sandbox {sandbox_id}"):
            readings = await container.stats(stream=False, timeout=30)
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


def _state(attrs: dict[str, Any]) -> tuple[str, int | None]:
    state = attrs.get("State")
    if isinstance(state, dict):
        return str(state.get("Status", "unknown")), state.get("ExitCode")
    return str(state or "unknown"), None


def _info(attrs: dict[str, Any], default_uid: int) -> SandboxInfo:
    labels = attrs.get("Config", {}).get("Labels") or attrs.get("Labels") or {}
    state, exit_code = _state(attrs)
    return SandboxInfo(
        sandbox_id=labels.get(LABEL_SANDBOX, ""),
        container_id=attrs.get("Id", ""),
        image=attrs.get("Config", {}).get("Image", "") or attrs.get("Image", ""),
        state=state,
        owner=labels.get(LABEL_OWNER, ""),
        created_at=float(labels.get(LABEL_CREATED, "0") or 0),
        labels=dict(labels),
        exit_code=exit_code if state == "exited" else None,
        spec=spec_from_labels(labels),
        owner_uid=owner_uid(labels, default_uid),
    )


def _summary(attrs: dict[str, Any], default_uid: int) -> SandboxInfo:
    labels = attrs.get("Labels") or {}
    return SandboxInfo(
        sandbox_id=labels.get(LABEL_SANDBOX, ""),
        container_id=attrs.get("Id", ""),
        image=attrs.get("Image", ""),
        state=str(attrs.get("State", "unknown")),
        owner=labels.get(LABEL_OWNER, ""),
        created_at=float(labels.get(LABEL_CREATED, "0") or 0),
        labels=dict(labels),
        spec=spec_from_labels(labels),
        owner_uid=owner_uid(labels, default_uid),
    )


@asynccontextmanager
async def open_docker(url: str | None = None) -> AsyncIterator[aiodocker.Docker]:
    """An engine client for the agent, closed on exit.

    Every open session holds one engine connection for its whole life, so a unix-socket
    engine gets a connector with no cap on connections: aiohttp's default of 100 would make
    the 101st concurrent use wait forever.
    """
    host = url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        docker = aiodocker.Docker(url=host)
        try:
            yield docker
        finally:
            with anyio.CancelScope(shield=True):
                await docker.close()
        return
    connector = aiohttp.UnixConnector(host[len("unix://") :], limit=0)
    try:
        docker = aiodocker.Docker(url="unix://localhost", connector=connector)
        try:
            yield docker
        finally:
            with anyio.CancelScope(shield=True):
                await docker.close()
    finally:
        with anyio.CancelScope(shield=True):
            await connector.close()


__all__ = ["DockerRuntime", "container_name", "engine_host_config", "open_docker"]
