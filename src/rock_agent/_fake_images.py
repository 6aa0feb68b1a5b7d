"""The images of a fake engine: records with tags, a pull that is a lookup, commits as copies.

Rules:
- An image is a record (`ImageRecord` fields) and, once a sandbox was committed to it, a folder
  holding that sandbox's files; a sandbox made from it starts with a copy of them.
- A tag names one image at a time: tagging moves it. Removing an image's last tag removes the
  image, and is refused (`SandboxFailed`) while a container uses it, as the engine refuses.
- "Pulling" finds the reference among `pullable` (nothing else is reachable); the pull
  policies are `_pull_policy`'s, as `DockerRuntime.ensure_image`'s are.
- Sizes are what the caller gave (a commit's is the size of its files); nothing is shared.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rock_core import BadRequest, ImageNotFound, NotFound, SandboxFailed

from ._pull_policy import check_policy, must_pull, unpulled
from ._runtime import ImageRecord, PullPolicy

DEFAULT_SIZE = 8 << 20  # bytes of an image the caller gave no size for
# Dockerfile instructions a commit's `changes` may hold (as the engine accepts them).
CHANGES = frozenset(
    {"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME", "WORKDIR"}
    | {"STOPSIGNAL", "HEALTHCHECK", "SHELL"}
)


@dataclass
class FakeImage:
    """One image of the fake engine."""

    image_id: str
    tags: list[str]
    size: int = DEFAULT_SIZE
    created: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    files: Path | None = None  # the committed sandbox's files, if it came from a commit

    def record(self, containers: int) -> ImageRecord:
        """The image as the runtime reports it, used by `containers` containers."""
        return ImageRecord(
            image_id=self.image_id,
            tags=list(self.tags),
            size=self.size,
            created=self.created,
            containers=containers,
            labels=dict(self.labels),
        )


def full_tag(reference: str) -> str:
    """`name` as the engine names it: `name:latest` unless a tag or digest is given."""
    last = reference.rsplit("/", 1)[-1]
    return reference if ":" in last or "@" in reference else f"{reference}:latest"


def image_id_of(tag: str) -> str:
    """A stable image id for a tag that was not committed here."""
    return "sha256:" + hashlib.sha256(tag.encode()).hexdigest()


class FakeImages:
    """The image store of a fake engine."""

    def __init__(self, images: Iterable[str], pullable: Iterable[str], folder: Path) -> None:
        self._by_id: dict[str, FakeImage] = {}
        self.pullable = {full_tag(t) for t in pullable}
        self._folder = folder
        for tag in images:
            self.add(tag)

    def add(
        self, tag: str, *, size: int = DEFAULT_SIZE, labels: Mapping[str, str] | None = None
    ) -> FakeImage:
        """Put image `tag` on the engine (as a pull or a build would)."""
        tag = full_tag(tag)
        image = FakeImage(image_id_of(tag), [], size, time.time(), dict(labels or {}))
        self._tag(image, tag)
        return image

    def _tag(self, image: FakeImage, tag: str) -> None:
        for other in list(self._by_id.values()):
            if tag in other.tags and other is not image:
                other.tags.remove(tag)  # the tag moves; the image stays, untagged
        if tag not in image.tags:
            image.tags.append(tag)
        self._by_id[image.image_id] = image

    def folder_for(self, image_id: str) -> Path:
        """Where the files of image `image_id` live."""
        return self._folder / image_id.removeprefix("sha256:")

    def load(self, image: FakeImage, tags: list[str]) -> None:
        """Put a loaded `image` on the engine with `tags` (an image already there is re-tagged)."""
        present = self._by_id.get(image.image_id)
        for tag in tags:
            self._tag(present or image, full_tag(tag))

    def find(self, reference: str) -> FakeImage:
        """The image a tag or id names; `ImageNotFound`."""
        image = self._by_id.get(reference)
        if image is not None:
            return image
        tag = full_tag(reference)
        for image in self._by_id.values():
            if tag in image.tags:
                return image
        raise ImageNotFound(f"image {reference}: no such image: {reference}", image=reference)

    def all(self) -> list[FakeImage]:
        """Every image, oldest first."""
        return sorted(self._by_id.values(), key=lambda i: (i.created, i.image_id))

    def tags(self) -> list[str]:
        """Every tag of every image, sorted."""
        return sorted(tag for image in self._by_id.values() for tag in image.tags)

    def ensure(self, image: str, policy: PullPolicy) -> None:
        """Make `image` present per the pull `policy` (see the rules)."""
        check_policy(policy)
        try:
            self.find(image)
            present = True
        except ImageNotFound:
            present = False
        if not must_pull(image, policy, present):
            return
        if full_tag(image) in self.pullable:
            if not present:
                self.add(image)
            return
        problem = unpulled(
            image, present, "the fake engine can pull only the images it was given as pullable"
        )
        if problem is not None:
            raise problem

    def remove(self, reference: str, in_use: set[str]) -> None:
        """Remove one tag, or an untagged image by id; the image goes with its last tag."""
        image = self.find(reference)
        tag = full_tag(reference)
        if tag in image.tags and len(image.tags) > 1:
            image.tags.remove(tag)
            return
        if image.image_id in in_use:
            raise SandboxFailed(
                f"removing image {reference}: a container uses image {image.image_id[:19]}"
            )
        del self._by_id[image.image_id]
        if image.files is not None:
            shutil.rmtree(image.files, ignore_errors=True)

    def commit(self, tag: str, files: Path, labels: dict[str, str]) -> FakeImage:
        """A new image `tag` holding a copy of `files` (blocking: run it in a thread)."""
        image_id = "sha256:" + secrets.token_hex(32)
        copy = self._folder / image_id.removeprefix("sha256:")
        shutil.copytree(files, copy, symlinks=True)
        size = sum(p.lstat().st_size for p in copy.rglob("*"))
        image = FakeImage(image_id, [], size, time.time(), labels, copy)
        self._tag(image, full_tag(tag))
        return image


def check_changes(changes: list[str]) -> None:
    """`BadRequest` unless every change is a Dockerfile instruction a commit accepts."""
    for change in changes:
        word = change.strip().split(" ", 1)[0].upper()
        if word not in CHANGES:
            raise BadRequest(f"commit change {change!r}: unknown instruction {word or '(none)'}")


def commit_labels(
    images: FakeImages, image_id: str, own: Mapping[str, str], given: Mapping[str, str]
) -> dict[str, str]:
    """The labels of an image committed from a sandbox: its image's and its own, the kit's
    ``rock.*`` ones blanked (as the engine's commit does with ours), then `given`."""
    try:
        source = images.find(image_id).labels
    except NotFound:
        source = {}
    merged = {**source, **own}
    merged = {k: ("" if k.startswith("rock.") else v) for k, v in merged.items()}
    return {**merged, **given}


__all__ = ["FakeImage", "FakeImages", "check_changes", "commit_labels", "full_tag", "image_id_of"]
