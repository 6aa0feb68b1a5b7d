"""The conformance check of moving an image as a byte stream (`export_image`, `load_image`):
what every `ContainerRuntime` must do so that a checkpoint can reach another host.

Rules (those of `_conformance`, whose `CHECKS` holds this too):
- An image committed from a sandbox, exported, removed and loaded again from the exported
  bytes, is the same image (same id, its labels kept), and a sandbox made from it has the
  committed sandbox's files.
- Exporting a missing image is `ImageNotFound`; loading bytes that are no image archive is a
  `BadRequest`. Nothing is left behind (the check removes its image).
"""

from __future__ import annotations

import secrets

from rock_core import BadRequest, ImageNotFound

from ._conformance_kit import check, chunks, make_tar, read_tar, sandbox, spec
from ._runtime import ContainerRuntime


async def check_image_archive(runtime: ContainerRuntime, image: str) -> None:
    """An exported image loads back whole, with its files; bad input is refused by type."""
    tag = f"c{secrets.token_hex(4)}"
    reference = f"rock-conf/archive:{tag}"
    async with sandbox(runtime, image, "archive") as sandbox_id:
        await runtime.put_archive(sandbox_id, "/tmp", chunks(make_tar({"kept.txt": b"forked"})))
        image_id = await runtime.commit(
            sandbox_id,
            repository="rock-conf/archive",
            tag=tag,
            message="",
            changes=[],
            labels={"rock-kit.conformance": tag},
            pause=True,
        )
    try:
        archive = bytearray()
        async for chunk in runtime.export_image(reference):
            archive += chunk
        check(len(archive) > 0, "an export of an image sent no bytes")
        await runtime.remove_image(reference)
        try:
            await runtime.inspect_image(reference)
        except ImageNotFound:
            pass
        else:
            raise AssertionError(f"{reference} is still there after its removal")
        try:  # an archive is loaded only as the one image it is expected to be
            await runtime.load_image(chunks(bytes(archive)), only="rock-conf/archive:other")
        except BadRequest as exc:
            check(reference in str(exc), f"the refusal names no tag: {exc}")
        else:
            raise AssertionError("an archive of another tag was loaded")
        await runtime.load_image(chunks(bytes(archive)), only=reference)
        loaded = await runtime.inspect_image(reference)
        check(loaded.image_id == image_id, f"loaded as {loaded.image_id}, not {image_id}")
        check(loaded.labels.get("rock-kit.conformance") == tag, loaded.labels)
        fork = f"conf-fork-{secrets.token_hex(4)}"
        await runtime.create(fork, spec(reference), "conformance", runtime.uid)
        try:
            found = await read_tar(runtime, fork, "/tmp/kept.txt")
            check(found.get("kept.txt") == b"forked", f"the fork's file: {found}")
        finally:
            await runtime.remove(fork)
    finally:
        try:
            await runtime.remove_image(reference)
        except ImageNotFound:
            pass
    try:
        async for _ in runtime.export_image(reference):
            pass
    except ImageNotFound as exc:
        check(reference in str(exc), f"the error names no image: {exc}")
    else:
        raise AssertionError("exporting a missing image raised nothing")
    try:
        await runtime.load_image(chunks(b"this is no image archive" * 100), only=reference)
    except BadRequest as exc:
        check("archive" in str(exc) or "tar" in str(exc), f"a vague refusal: {exc}")
    else:
        raise AssertionError("loading garbage raised nothing")


__all__ = ["check_image_archive"]
