"""Moving one image of a Docker engine as a byte stream: its archive out (``docker save``) and
an archive in (``docker load``), the runtime seam's `export_image` and `load_image`.

Rules:
- A mixin of `DockerRuntime` (it uses the runtime's `docker` client and nothing else): the
  archive holds the one image named, with its tags, labels and layers.
- An export streams the engine's answer in chunks as it arrives; it is bounded by progress
  (`IDLE` seconds without a byte is `TimedOut`), never by its total time.
- A load spools the archive to a temporary file first, so a broken stream never reaches the
  engine (the load itself is bounded only by the engine); an archive the engine refuses is a
  `BadRequest` with the engine's words.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from typing import IO, Any

import aiodocker
import anyio

from rock_core import BadRequest, ImageNotFound, TimedOut

from ._engine import engine_errors

CHUNK = 1 << 20  # bytes read from the engine at a time
IDLE = 120.0  # seconds an export or a load may go without progress


MAX_JSON = 1 << 20  # bytes of an archive's manifest, repositories or index read at most


class DockerImageArchives:
    """`export_image` and `load_image` over the engine's image archive API."""

    docker: aiodocker.Docker

    async def export_image(self, reference: str) -> AsyncGenerator[bytes, None]:
        """The archive of image `reference` alone, in chunks (see `ContainerRuntime`)."""
        what = f"exporting image {reference}"
        with engine_errors(what, not_found=ImageNotFound):
            async with self.docker.images.export_image(reference, timeout=None) as content:
                while True:
                    with anyio.move_on_after(IDLE) as scope:
                        chunk = await content.read(CHUNK)
                    if scope.cancelled_caught:
                        raise TimedOut(f"{what}: the Docker engine sent nothing for {IDLE:g} s")
                    if not chunk:
                        return
                    yield chunk

    async def load_image(self, archive: AsyncIterator[bytes], *, only: str) -> None:
        """Load an image archive of `only` (see `ContainerRuntime`)."""
        with tempfile.TemporaryFile(prefix="rock-load-") as spool:
            async for chunk in archive:
                await anyio.to_thread.run_sync(spool.write, chunk)
            what = "loading an image archive"
            tags = await anyio.to_thread.run_sync(archive_tags, spool)
            if tags != {only}:
                named = ", ".join(sorted(tags)) or "none"
                raise BadRequest(f"{what}: it must tag {only} and nothing else, it tags {named}")
            await anyio.to_thread.run_sync(spool.seek, 0)
            problem = ""
            with engine_errors(what, not_found=ImageNotFound):
                async with self.docker._query(
                    "images/load",
                    method="POST",
                    params={"quiet": "1"},
                    headers={"content-type": "application/x-tar"},
                    data=spool,
                    timeout=None,
                ) as response:
                    body = await response.read()
            for line in body.splitlines():
                problem = problem or _error_of(line)
            if problem:
                raise BadRequest(f"{what}: {problem}")


def archive_tags(spool: IO[bytes]) -> set[str]:
    """Every name an engine's image archive would tag on load: ``manifest.json``'s
    ``RepoTags``, the legacy ``repositories`` map and an OCI ``index.json``'s ref names.
    `BadRequest` for what is no such archive."""
    spool.seek(0)
    tags: set[str] = set()
    try:
        with tarfile.open(fileobj=spool, mode="r:") as tar:
            manifest = _json_member(tar, "manifest.json")
            if not isinstance(manifest, list):
                raise ValueError("manifest.json is not a list")
            for entry in manifest:
                tags.update(str(tag) for tag in (entry.get("RepoTags") or []))
            repositories = _json_member(tar, "repositories", required=False) or {}
            for repository, by_tag in dict(repositories).items():
                tags.update(f"{repository}:{tag}" for tag in dict(by_tag))
            index = _json_member(tar, "index.json", required=False) or {}
            for item in list(dict(index).get("manifests") or []):
                for key, value in dict(dict(item).get("annotations") or {}).items():
                    if key in ("io.containerd.image.name", "org.opencontainers.image.ref.name"):
                        tags.add(str(value))
    except (tarfile.TarError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise BadRequest(f"loading an image archive: not an image archive ({exc})") from exc
    return tags


def _json_member(tar: tarfile.TarFile, name: str, *, required: bool = True) -> Any:
    try:
        member = tar.extractfile(name)
    except KeyError:
        if required:
            raise
        return None
    if member is None:
        raise ValueError(f"{name} is not a file")
    data = member.read(MAX_JSON + 1)
    if len(data) > MAX_JSON:
        raise ValueError(f"{name} is larger than {MAX_JSON} bytes")
    return json.loads(data)


def _error_of(line: bytes) -> str:
    """The error a line of the engine's load progress reports, or ""."""
    try:
        item: Any = json.loads(line)
    except ValueError:
        return ""
    if isinstance(item, dict) and item.get("error"):
        return str(item["error"])
    return ""


__all__ = ["DockerImageArchives"]
