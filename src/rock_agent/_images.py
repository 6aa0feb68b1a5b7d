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
  never mistaken for a sandbox. ``rock-kit.committer`` (outside that namespace) names who
  committed it (uid:owner).
- Images are shared by every user of the host, so a user's committed images are that user's:
  a commit to a tag that exists is `AlreadyExists` unless the image there was committed by the
  same user (uid); prune never removes an image another user committed (only root's
  administrator may). Pulled images and images made outside the kit belong to no one: any
  commit refuses to replace them, any prune may remove them.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import time
from typing import NamedTuple, Protocol

import anyio

from rock_core import AlreadyExists, BadRequest, ImageNotFound, RockError
from rock_core.protocol import (
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
from rock_core.serving import Connection, Principal

from ._image_usage import NOTE_INTERVAL as NOTE_INTERVAL  # re-exported: the record's home
from ._image_usage import STATE_DIR_ENV as STATE_DIR_ENV
from ._image_usage import USAGE_FILE as USAGE_FILE
from ._image_usage import ImageUsage as ImageUsage
from ._image_usage import note_use as note_use
from ._image_usage import record
from ._image_usage import state_dir as state_dir
from ._runtime import ContainerRuntime, ContainerSummary

log = logging.getLogger("rock_agent.images")

# Who committed an image: "uid:owner" of the committing connection (`Principal.key`).
LABEL_COMMITTER = "rock-kit.committer"  # not "rock.": those are blanked in every commit
_NO_TAG = {"<none>:<none>", "<none>@<none>"}
# The engine's reference grammar: an optional registry host, then lowercase path components.
_DOMAIN = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
)
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^(?:{_DOMAIN}(?::[0-9]+)?/)?{_PATH}(?:/{_PATH})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class _Server(Protocol):
    runtime: ContainerRuntime
    image_usage: ImageUsage


# ---------------------------------------------------------------------------- owners


def committer_uid(labels: object) -> int | None:
    """The uid that committed (or built, `_build`) an image, from its labels; None if the kit
    made it neither way (pulled, or made outside the kit), -1 if the label is garbled."""
    key = labels.get(LABEL_COMMITTER) if isinstance(labels, dict) else None
    if not key:
        return None
    try:
        return int(str(key).partition(":")[0])
    except ValueError:
        return -1


def may_remove(who: Principal, committer: int | None) -> bool:
    """True if `who` may prune an image committed by `committer` (None: by no one)."""
    return committer is None or committer == who.uid or (who.admin and who.uid == 0)


# ---------------------------------------------------------------------------- survey


def _tags(tags: list[str]) -> list[str]:
    return sorted(tag for tag in tags if tag and tag not in _NO_TAG)


def _container_use(containers: list[ContainerSummary], now: float) -> dict[str, float]:
    """Image id -> newest creation time of a container made from it (now while one runs)."""
    use: dict[str, float] = {}
    for container in containers:
        when = now if container.running else container.created
        use[container.image_id] = max(when, use.get(container.image_id, 0.0))
    return use


class Survey(NamedTuple):
    """Every image with its last use; the ids of images a container (any state) uses; the uid
    that committed each image a sandbox commit made (see `committer_uid`)."""

    report: ImageReport
    in_use: set[str]
    committers: dict[str, int | None]


async def survey(server: _Server) -> Survey:
    """Every image with its last use, the images in use and who committed each."""
    runtime = server.runtime
    usage = await runtime.disk_usage()
    containers = await runtime.all_containers()
    recorded = await anyio.to_thread.run_sync(server.image_usage.load)
    now = time.time()
    by_containers = _container_use(containers, now)
    in_use = {c.image_id for c in containers}
    images = []
    committers: dict[str, int | None] = {}
    for raw in usage.images:
        image_id = raw.image_id
        committers[image_id] = committer_uid(raw.labels)
        created = raw.created
        count = raw.containers
        if count > 0:
            in_use.add(image_id)
        images.append(
            ImageInfo(
                image_id=image_id,
                tags=_tags(raw.tags),
                size=raw.size,
                shared_size=raw.shared_size,
                created=created,
                last_used=max(created, recorded.get(image_id, 0.0), by_containers.get(image_id, 0)),
                containers=max(count, sum(1 for c in containers if c.image_id == image_id)),
            )
        )
    images.sort(key=lambda i: (-i.last_used, i.tags, i.image_id))
    disk = await _disk_size(runtime)
    report = ImageReport(images=images, total_size=usage.layers_size, disk_size=disk)
    return Survey(report, in_use, committers)


async def _disk_size(runtime: ContainerRuntime) -> int:
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
    image_id = raw.image_id
    report = (await survey(server)).report
    for info in report.images:
        if info.image_id == image_id:
            return info
    # Not a top-level image (an intermediate one): describe it from the inspect record.
    return ImageInfo(
        image_id=image_id,
        tags=_tags(raw.tags),
        size=raw.size,
        created=raw.created,
        last_used=raw.created,
    )


# ---------------------------------------------------------------------------- handlers


async def list_images(server: _Server, conn: object, req: ListImages) -> Reply:
    """Handler of `ListImages`."""
    report = (await survey(server)).report
    return ImageListReply(id=req.id, report=report)


async def warm_image(server: _Server, conn: object, req: WarmImage) -> Reply:
    """Handler of `WarmImage`: present already is a quick success; missing means a pull."""
    reference = req.image.strip()
    if not reference:
        raise BadRequest("warming needs an image name")
    await server.runtime.ensure_image(reference, "missing")
    image_id = (await server.runtime.inspect_image(reference)).image_id
    await record(server.image_usage, {image_id: time.time()})
    return ImageReply(id=req.id, image=await image_info(server, image_id))


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


def _kept(who: Principal, found: Survey) -> set[str]:
    """Ids prune leaves alone: images in use, and those `who` may not remove."""
    mine = {i for i, uid in found.committers.items() if may_remove(who, uid)}
    return found.in_use | (set(found.committers) - mine)


async def prune_images(server: _Server, conn: Connection, req: PruneImages) -> Reply:
    """Handler of `PruneImages`."""
    found = await survey(server)
    report, in_use = found.report, _kept(conn.principal, found)
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
        found = await survey(server)
        report, in_use = found.report, _kept(conn.principal, found)
    if removed:
        await record(server.image_usage, {}, forget=[i.image_id for i in removed])
    result = PruneResult(
        limit=limit,
        total_before=before,
        total_after=report.total_size,
        freed=before - report.total_size,
        removed=removed,
        errors=errors,
    )
    return PruneReply(id=req.id, result=result)


def split_reference(image: str, verb: str = "commit") -> tuple[str, str]:
    """(repository, tag) of a ``name[:tag]`` to `verb` to; the tag defaults to ``latest``."""
    image = image.strip()
    if not image:
        raise BadRequest(f"{verb} needs an image name such as 'me/saved:1'")
    if "@" in image:
        raise BadRequest(f"{verb} to a name:tag, not a digest: {image!r}")
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        name, tag = image, "latest"
    if len(name) > 255 or not _NAME.match(name) or not _TAG.match(tag):
        raise BadRequest(
            f"{image!r} is not a valid image name: use lowercase letters, digits and . _ - / "
            "in the name, and an optional :tag, e.g. 'me/saved:1'"
        )
    return name, tag


async def check_overwrite(
    server: _Server, who: Principal, reference: str, verb: str = "commit"
) -> None:
    """`AlreadyExists` unless `reference` is free or names an image `who`'s user committed
    (or built: a build labels its image as a commit does)."""
    try:
        existing = await server.runtime.inspect_image(reference)
    except ImageNotFound:
        return
    committer = committer_uid(existing.labels)
    if committer != who.uid:
        by = "no sandbox commit" if committer is None else f"user {committer}"
        raise AlreadyExists(
            f"image {reference} already exists (made by {by}): a {verb} replaces only an"
            f" image its own user committed; {verb} to another name"
        )


async def commit_sandbox(server: _Server, conn: Connection, req: CommitSandbox) -> Reply:
    """Handler of `CommitSandbox`."""
    repository, tag = split_reference(req.image)
    await check_overwrite(server, conn.principal, f"{repository}:{tag}")
    image_id = await server.runtime.commit(
        req.sandbox_id,
        repository=repository,
        tag=tag,
        message=req.message,
        changes=list(req.changes),
        labels={LABEL_COMMITTER: conn.principal.key},
        pause=req.pause,
    )
    await record(server.image_usage, {image_id: time.time()})
    return ImageReply(id=req.id, image=await image_info(server, image_id))
