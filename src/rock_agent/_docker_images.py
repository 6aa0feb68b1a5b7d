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
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import aiodocker
import anyio

from rock_core import BadRequest, ImageNotFound, TimedOut

from ._engine import engine_errors

CHUNK = 1 << 20  # bytes read from the engine at a time
IDLE = 120.0  # seconds an export or a load may go without progress


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

    async def load_image(self, archive: AsyncIterator[bytes]) -> None:
        """Load an image archive (see `ContainerRuntime`)."""
        with tempfile.TemporaryFile(prefix="rock-load-") as spool:
            async for chunk in archive:
                await anyio.to_thread.run_sync(spool.write, chunk)
            await anyio.to_thread.run_sync(spool.seek, 0)
            what = "loading an image archive"
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
