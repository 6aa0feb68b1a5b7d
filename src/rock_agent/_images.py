"""Images on a host: list, warm (pull), prune least recently used, and commit a sandbox.

Rules:
- "Last used" of an image is the newest of: its creation time; the agent's record of when a
  sandbox was created from it, it was warmed or committed (`ImageUsage`, a small JSON file kept
  in the agent's state folder and shared by every agent process of the host); the creation time
  of the newest container (any owner, any state) made from it; now, if such a container runs.
- Warming never pulls an image that is already on the host (a registry may be unreachable, and
  the local copy is what a sandbox would use); a missing image that cannot be pulled is
  `ImageNotFound`.
- Prune removes candidates least recently used first while all images' layers take more than
  the limit, measuring the total again after each removal. A candidate has no container (any
  state) and, when `only` patterns are given, every tag matches one of them. Removal is never
  forced, so an image a container started using meanwhile stays (the engine refuses).
- A committed image keeps the source image's entrypoint, command, environment, working folder,
  user and labels, plus what the sandbox changed (files, and the variables it was given). The
  agent's own ``rock.*`` labels are blanked in it, so a container made from it by anyone else is
  never mistaken for a sandbox.
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import logging
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import anyio

from rock_core._errors import BadRequest, RockError
from rock_core._protocol import (
    CommitSandbox,
    ImageInfo,
    ImageListReply,
    ImageReply,
    ImageReport,
    ListImages,
    PruneImages,
    PruneReply,
    PruneResult,
    Reply,
    WarmImage,
)

from ._docker import DockerRuntime
from ._stats import engine_time

log = logging.getLogger("rock_agent.images")

STATE_DIR_ENV = "ROCK_AGENT_STATE_DIR"
USAGE_FILE = "image-usage.json"
NOTE_INTERVAL = 60.0  # a sandbox start records its image's use at most this often per agent
_NO_TAG = {"<none>:<none>", "<none>@<none>"}
# The engine's reference grammar: an optional registry host, then lowercase path components.
_DOMAIN = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
)
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^(?:{_DOMAIN}(?::[0-9]+)?/)?{_PATH}(?:/{_PATH})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def state_dir() -> Path:
    """The agent's state folder: ``$ROCK_AGENT_STATE_DIR``, else a per-user default."""
    custom = os.environ.get(STATE_DIR_ENV)
    if custom:
        return Path(custom)
    if os.geteuid() == 0:
        return Path("/var/lib/rock-agent")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rock-agent"


class ImageUsage:
    """When each image (by id) was last used, in a JSON file every agent of the host shares.

    The methods do file I/O: call them in a worker thread. Writes are serialised across
    processes with a lock file and replace the file atomically, so readers never see half of it.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder
        self._noted: dict[str, float] = {}

    @property
    def path(self) -> Path:
        """The record's file."""
        return (self._folder or state_dir()) / USAGE_FILE

    def due(self, reference: str, now: float) -> bool:
        """True when a use of `reference` should be written (throttled per reference)."""
        last = self._noted.get(reference)
        if last is not None and now - last < NOTE_INTERVAL:
            return False
        self._noted[reference] = now
        return True

    def load(self) -> dict[str, float]:
        """Image id -> unix time of its last recorded use; empty if there is no record."""
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring an unreadable image-usage record %s: %s", self.path, exc)
            return {}
        used = raw.get("last_used") if isinstance(raw, dict) else None
        if not isinstance(used, dict):
            return {}
        return {k: float(v) for k, v in used.items() if isinstance(v, int | float)}

    def update(self, used: dict[str, float], forget: Iterable[str] = ()) -> None:
        """Record uses (keeping the newer time of each) and drop forgotten ids."""
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(USAGE_FILE + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            record = self.load()
            for image_id, when in used.items():
                record[image_id] = max(when, record.get(image_id, 0.0))
            for image_id in forget:
                record.pop(image_id, None)
            temporary = path.with_name(f".{USAGE_FILE}.{os.getpid()}")
            temporary.write_text(json.dumps({"version": 1, "last_used": record}, indent=0))
            os.replace(temporary, path)


class _Server(Protocol):
    runtime: DockerRuntime
    image_usage: ImageUsage


async def _record(usage: ImageUsage, used: dict[str, float], forget: Iterable[str] = ()) -> None:
    """Write to the usage record; a failure is logged, never raised (it only orders prunes)."""
    try:
        await anyio.to_thread.run_sync(usage.update, used, list(forget))
    except OSError as exc:
        log.warning("cannot write the image-usage record %s: %s", usage.path, exc)


async def note_use(server: _Server, reference: str) -> None:
    """A sandbox was created from `reference`: record the use (at most once a minute)."""
    now = time.time()
    if not server.image_usage.due(reference, time.monotonic()):
        return
    try:
        image_id = str((await server.runtime.inspect_image(reference))["Id"])
    except RockError as exc:
        log.warning("cannot record the use of image %s: %s", reference, exc)
        return
    await _record(server.image_usage, {image_id: now})


# ---------------------------------------------------------------------------- survey


def _tags(raw: object) -> list[str]:
    if not isinstance(raw, list):
        return []
    return sorted(str(tag) for tag in raw if tag and tag not in _NO_TAG)


def _container_use(containers: list[dict[str, Any]], now: float) -> dict[str, float]:
    """Image id -> newest creation time of a container made from it (now while one runs)."""
    use: dict[str, float] = {}
    for container in containers:
        image_id = container.get("ImageID") or ""
        when = now if container.get("State") == "running" else float(container.get("Created", 0))
        use[image_id] = max(when, use.get(image_id, 0.0))
    return use


async def survey(server: _Server) -> tuple[ImageReport, set[str]]:
    """Every image with its last use, and the ids of images a container (any state) uses."""
    runtime = server.runtime
    usage = await runtime.disk_usage()
    containers = await runtime.all_containers()
    recorded = await anyio.to_thread.run_sync(server.image_usage.load)
    now = time.time()
    by_containers = _container_use(containers, now)
    in_use = {c.get("ImageID") or "" for c in containers}
    images = []
    for raw in usage.get("Images") or []:
        image_id = str(raw.get("Id", ""))
        created = float(raw.get("Created") or 0)
        count = int(raw.get("Containers") or 0)
        if count > 0:
            in_use.add(image_id)
        images.append(
            ImageInfo(
                image_id=image_id,
                tags=_tags(raw.get("RepoTags")),
                size=int(raw.get("Size") or 0),
                shared_size=max(0, int(raw.get("SharedSize") or 0)),
                created=created,
                last_used=max(created, recorded.get(image_id, 0.0), by_containers.get(image_id, 0)),
                containers=max(count, sum(1 for c in containers if c.get("ImageID") == image_id)),
            )
        )
    images.sort(key=lambda i: (-i.last_used, i.tags, i.image_id))
    disk = await _disk_size(runtime)
    report = ImageReport(
        images=images, total_size=int(usage.get("LayersSize") or 0), disk_size=disk
    )
    return report, in_use


async def _disk_size(runtime: DockerRuntime) -> int:
    """Capacity of the file system holding the engine's data; 0 when not on this host."""
    root = await runtime.data_root()
    if not root:
        return 0
    try:
        fs = await anyio.to_thread.run_sync(os.statvfs, root)
    except OSError:
        return 0
    return fs.f_blocks * fs.f_frsize


async def image_info(server: _Server, reference: str) -> ImageInfo:
    """One image by reference or id, with its last use."""
    raw = await server.runtime.inspect_image(reference)
    image_id = str(raw.get("Id", ""))
    report, _ = await survey(server)
    for info in report.images:
        if info.image_id == image_id:
            return info
    # Not a top-level image (an intermediate one): describe it from the inspect record.
    created = engine_time(raw.get("Created"))
    return ImageInfo(
        image_id=image_id,
        tags=_tags(raw.get("RepoTags")),
        size=int(raw.get("Size") or 0),
        created=created,
        last_used=created,
    )


# ---------------------------------------------------------------------------- handlers


async def list_images(server: _Server, conn: object, req: ListImages) -> Reply:
    """Handler of `ListImages`."""
    report, _ = await survey(server)
    return ImageListReply(id=req.id, report=report)


async def warm_image(server: _Server, conn: object, req: WarmImage) -> Reply:
    """Handler of `WarmImage`: present already is a quick success; missing means a pull."""
    reference = req.image.strip()
    if not reference:
        raise BadRequest("warming needs an image name")
    await server.runtime.ensure_image(reference, "missing")
    raw = await server.runtime.inspect_image(reference)
    await _record(server.image_usage, {str(raw["Id"]): time.time()})
    return ImageReply(id=req.id, image=await image_info(server, str(raw["Id"])))


def prune_limit(req: PruneImages, disk_size: int) -> int:
    """The bytes images may take, from exactly one of `max_bytes` and `max_percent`."""
    if (req.max_bytes is None) == (req.max_percent is None):
        raise BadRequest("prune needs exactly one limit: max_bytes or max_percent")
    if req.max_bytes is not None:
        if req.max_bytes < 0:
            raise BadRequest(f"max_bytes must not be negative, got {req.max_bytes}")
        return req.max_bytes
    assert req.max_percent is not None
    if not 0 <= req.max_percent <= 100:
        raise BadRequest(f"max_percent must be between 0 and 100, got {req.max_percent:g}")
    if disk_size <= 0:
        raise BadRequest(
            "a limit in percent needs the engine's data folder on this host; give max_bytes"
        )
    return int(disk_size * req.max_percent / 100)


def prune_candidates(images: list[ImageInfo], in_use: set[str], only: list[str]) -> list[ImageInfo]:
    """Images prune may remove, least recently used first."""
    found = []
    for info in images:
        if info.image_id in in_use or info.containers > 0 or info.size - info.shared_size <= 0:
            continue
        if only and not (
            info.tags
            and all(any(fnmatch.fnmatchcase(t, pattern) for pattern in only) for t in info.tags)
        ):
            continue
        found.append(info)
    return sorted(found, key=lambda i: (i.last_used, i.created, i.image_id))


def _name(info: ImageInfo) -> str:
    return ", ".join(info.tags) or info.image_id[:19]


async def prune_images(server: _Server, conn: object, req: PruneImages) -> Reply:
    """Handler of `PruneImages`."""
    report, in_use = await survey(server)
    limit = prune_limit(req, report.disk_size)
    before = report.total_size
    removed: list[ImageInfo] = []
    errors: list[str] = []
    if req.dry_run:
        total = before
        for info in prune_candidates(report.images, in_use, req.only):
            if total <= limit:
                break
            removed.append(info)
            total -= info.size - info.shared_size
        result = PruneResult(
            limit=limit,
            total_before=before,
            total_after=total,
            freed=before - total,
            removed=removed,
            dry_run=True,
        )
        return PruneReply(id=req.id, result=result)
    tried: set[str] = set()
    while report.total_size > limit:
        candidates = [
            i for i in prune_candidates(report.images, in_use, req.only) if i.image_id not in tried
        ]
        if not candidates:
            break
        victim = candidates[0]
        tried.add(victim.image_id)
        try:
            for reference in victim.tags or [victim.image_id]:
                await server.runtime.remove_image(reference)
        except RockError as exc:
            errors.append(f"{_name(victim)}: {exc}")
            log.warning("prune kept image %s: %s", _name(victim), exc)
        else:
            removed.append(victim)
            log.info("pruned image", extra={"image": _name(victim), "size": victim.size})
        report, in_use = await survey(server)
    if removed:
        await _record(server.image_usage, {}, forget=[i.image_id for i in removed])
    result = PruneResult(
        limit=limit,
        total_before=before,
        total_after=report.total_size,
        freed=before - report.total_size,
        removed=removed,
        errors=errors,
    )
    return PruneReply(id=req.id, result=result)


def split_reference(image: str) -> tuple[str, str]:
    """(repository, tag) of a ``name[:tag]`` to commit to; the tag defaults to ``latest``."""
    image = image.strip()
    if not image:
        raise BadRequest("commit needs an image name such as 'me/saved:1'")
    if "@" in image:
        raise BadRequest(f"commit to a name:tag, not a digest: {image!r}")
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        name, tag = image, "latest"
    if len(name) > 255 or not _NAME.match(name) or not _TAG.match(tag):
        raise BadRequest(
            f"{image!r} is not a valid image name: use lowercase letters, digits and . _ - / "
            "in the name, and an optional :tag, e.g. 'me/saved:1'"
        )
    return name, tag


def commit_config(container: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """The config a committed image starts from (the engine merges the container's into it).

    The source image's entrypoint and command come back (the sandbox ran a keep-alive instead),
    and every ``rock.*`` label the container carried is blanked.
    """
    labels = dict(source.get("Labels") or {})
    for key in [*((container.get("Config") or {}).get("Labels") or {}), *labels]:
        if key.startswith("rock."):
            labels[key] = ""
    return {
        "Labels": labels,
        # An empty list, not null: the engine would otherwise take the container's keep-alive.
        "Entrypoint": list(source.get("Entrypoint") or []),
        "Cmd": list(source.get("Cmd") or []),
        "Env": list(source.get("Env") or []),
        "WorkingDir": source.get("WorkingDir") or "",
        "User": source.get("User") or "",
    }


async def commit_sandbox(server: _Server, conn: object, req: CommitSandbox) -> Reply:
    """Handler of `CommitSandbox`."""
    repository, tag = split_reference(req.image)
    container = await server.runtime.inspect_container(req.sandbox_id)
    source = await server.runtime.inspect_image(str(container.get("Image", "")))
    image_id = await server.runtime.commit(
        req.sandbox_id,
        repository=repository,
        tag=tag,
        message=req.message,
        changes=list(req.changes),
        config=commit_config(container, source.get("Config") or {}),
        pause=req.pause,
    )
    await _record(server.image_usage, {image_id: time.time()})
    return ImageReply(id=req.id, image=await image_info(server, image_id))
