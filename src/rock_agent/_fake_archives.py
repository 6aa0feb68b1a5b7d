"""Moving one image of the fake engine as a byte stream, as `DockerImageArchives` does for
Docker: the runtime seam's `export_image` and `load_image` over `FakeImages`, and
`build_image` from a context's byte stream (`_fake_build`).

Rules:
- A mixin of `FakeRuntime` (it uses the runtime's `images` and `folder`, nothing else).
- The archive is a tar: ``image.json`` (the image's id, tags, labels, size and creation time)
  and, for an image made by a commit, its files under ``files/``. A load keeps the id, so an
  image has the same id on every fake host, as an engine's content-addressed image does.
- A load re-tags an image that is there already (as the engine's load does); a tar without a
  readable ``image.json`` is a `BadRequest`.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from pathlib import Path

import anyio

from rock_core import BadRequest

from ._fake_build import fake_build
from ._fake_images import FakeImage, FakeImages
from ._runtime import BuildOutcome

CHUNK = 1 << 20


class FakeImageArchives:
    """`export_image`, `load_image` and `build_image` over a `FakeImages` store."""

    images: FakeImages
    folder: Path

    async def export_image(self, reference: str) -> AsyncGenerator[bytes, None]:
        """The archive of image `reference` (see the rules). `ImageNotFound`."""
        image = self.images.find(reference)
        with tempfile.TemporaryFile(prefix="rock-fake-save-") as spool:
            await anyio.to_thread.run_sync(_save, image, spool)
            spool.seek(0)
            while chunk := await anyio.to_thread.run_sync(spool.read, CHUNK):
                yield chunk

    async def load_image(self, archive: AsyncIterator[bytes], *, only: str) -> None:
        """Load an archive `export_image` made. `BadRequest` for a bad one."""
        with tempfile.TemporaryFile(prefix="rock-fake-load-") as spool:
            async for chunk in archive:
                await anyio.to_thread.run_sync(spool.write, chunk)
            spool.seek(0)
            await anyio.to_thread.run_sync(_load, self.images, spool, only)

    async def build_image(
        self,
        context: AsyncIterator[bytes],
        *,
        tag: str,
        dockerfile: str,
        labels: Mapping[str, str],
    ) -> BuildOutcome:
        """Build `tag` by running a Dockerfile subset over folders (`_fake_build`)."""
        return await fake_build(
            self.images, self.folder, context, tag=tag, dockerfile=dockerfile, labels=labels
        )


def _save(image: FakeImage, out: io.BufferedRandom | object) -> None:
    record = {
        "image_id": image.image_id,
        "tags": image.tags,
        "labels": image.labels,
        "size": image.size,
        "created": image.created,
    }
    with tarfile.open(fileobj=out, mode="w") as tar:  # type: ignore[call-overload]
        data = json.dumps(record).encode()
        info = tarfile.TarInfo("image.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        if image.files is not None:
            tar.add(image.files, arcname="files")


def _load(images: FakeImages, source: object, only: str) -> None:
    try:
        with tarfile.open(fileobj=source, mode="r") as tar:  # type: ignore[call-overload]
            member = tar.extractfile("image.json")
            if member is None:
                raise KeyError("image.json")
            record = json.loads(member.read())
            image_id, tags = str(record["image_id"]), [str(t) for t in record["tags"]]
            if set(tags) != {only}:
                named = ", ".join(sorted(tags)) or "none"
                raise BadRequest(
                    f"loading an image archive: it must tag {only} and nothing else, "
                    f"it tags {named}"
                )
            folder = images.folder_for(image_id)
            if folder.exists():
                shutil.rmtree(folder)
            files = [
                m for m in tar.getmembers() if m.name == "files" or m.name.startswith("files/")
            ]
            if files:
                tar.extractall(folder.parent / ".loading", members=files, filter="tar")
                (folder.parent / ".loading" / "files").rename(folder)
                shutil.rmtree(folder.parent / ".loading", ignore_errors=True)
    except (tarfile.TarError, KeyError, ValueError, TypeError, OSError) as exc:
        raise BadRequest(f"loading an image archive: not an image archive ({exc})") from exc
    image = FakeImage(
        image_id,
        [],
        int(record.get("size", 0)),
        float(record.get("created", 0.0)),
        {str(k): str(v) for k, v in dict(record.get("labels", {})).items()},
        folder if files else None,
    )
    images.load(image, tags)


__all__ = ["FakeImageArchives"]
