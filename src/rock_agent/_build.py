"""Build an image on this host from a build context the client streams (`BuildImage`).

Rules:
- The context arrives as a tar stream of `StreamData` under credit (`Connection.open_inbound`,
  as an upload does), so neither side holds it whole in memory; the runtime builds from it.
- The tag is checked as a commit's is (`split_reference`), and so is its owner: a build
  replaces only an image its own user committed or built (`check_overwrite`), never a pulled
  one such as the base image it starts from.
- The Dockerfile must be a relative path inside the context, and a member of the stream: one
  that is missing is a `BadRequest` before the runtime is asked to build anything.
- A built image is labelled with its builder (``rock-kit.committer``, uid:owner) exactly as a
  committed one is, so `images ls` and `images prune` treat the two alike (prune never removes
  an image another user built), and its use is recorded as a commit's is.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import AsyncIterator
from typing import Protocol

from rock_core import BadRequest
from rock_core.protocol import BuildImage, BuildReply, Reply, StreamCredit
from rock_core.serving import WINDOW, Connection
from rock_core.tar import TarScanner

from ._files import until_end
from ._image_usage import ImageUsage, record
from ._images import LABEL_COMMITTER, check_overwrite, image_info, split_reference
from ._runtime import ContainerRuntime


class _Server(Protocol):
    runtime: ContainerRuntime
    image_usage: ImageUsage


def dockerfile_path(dockerfile: str) -> str:
    """The Dockerfile's path inside the context, normalised; `BadRequest` unless relative and
    inside it."""
    clean = posixpath.normpath(dockerfile.strip()) if dockerfile.strip() else ""
    if not clean or clean.startswith("/") or clean == "." or clean.split("/")[0] == "..":
        raise BadRequest(
            f"dockerfile {dockerfile!r} must be a file's path inside the build context,"
            " such as 'Dockerfile' or 'docker/Dockerfile'"
        )
    return clean


async def build_image(server: _Server, conn: Connection, req: BuildImage) -> Reply:
    """Handler of `BuildImage`."""
    repository, tag = split_reference(req.tag, "build")
    reference = f"{repository}:{tag}"
    dockerfile = dockerfile_path(req.dockerfile)
    await check_overwrite(server, conn.principal, reference, "build")
    receive = conn.open_inbound(req.id, WINDOW * 2)
    scanner = TarScanner()
    found = False

    async def context() -> AsyncIterator[bytes]:
        nonlocal found
        await conn.send(StreamCredit(id=req.id, chunks=WINDOW))
        async for chunk in until_end(receive):
            for member in scanner.feed(chunk):
                found = found or posixpath.normpath(member.name) == dockerfile
            yield chunk
            await conn.send(StreamCredit(id=req.id, chunks=1))
        if not found:
            raise BadRequest(f"building {reference}: the build context has no file {dockerfile}")

    outcome = await server.runtime.build_image(
        context(),
        tag=reference,
        dockerfile=dockerfile,
        labels={LABEL_COMMITTER: conn.principal.key},
    )
    await record(server.image_usage, {outcome.image_id: time.time()})
    info = await image_info(server, outcome.image_id)
    return BuildReply(id=req.id, image=info, output=outcome.output)


__all__ = ["build_image", "dockerfile_path"]
