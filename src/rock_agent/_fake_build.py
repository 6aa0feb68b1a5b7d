"""Image builds on the fake engine: a Dockerfile run over folders, its image a committed copy.

Rules:
- The context stream is spooled and unpacked (no member may leave the context's folder) before
  anything is built, as the engine receives a whole context first.
- A small Dockerfile subset is carried out, one step at a time, announced as the engine's
  classic builder announces it (``Step N/M : ...``) into the same `BuildLog`, so a failure
  reads as the Docker runtime's does: ``FROM`` (an image of the fake, or ``scratch``) starts
  from that image's files, ``COPY``/``ADD`` copy context files, ``WORKDIR`` moves (and makes)
  the working folder, ``RUN`` runs ``/bin/sh -c`` in it as a local process (not isolated: the
  fake's processes never are, so absolute paths are the host's), ``LABEL`` adds labels; the
  other instructions a commit accepts are recorded nowhere. Anything else is `BadRequest`.
- The image is made as a commit makes one (`FakeImages.commit`); the work folder is removed
  on every exit.
"""

from __future__ import annotations

import posixpath
import secrets
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import anyio

from rock_core import BadRequest, ImageNotFound

from ._build_log import BuildLog
from ._fake_files import host_path
from ._fake_images import CHANGES, FakeImages
from ._runtime import BuildOutcome

STEPS = frozenset({"FROM", "COPY", "ADD", "RUN", "WORKDIR", "LABEL"}) | CHANGES


def parse(text: str) -> list[tuple[str, str]]:
    """(instruction, arguments) of each step: comments and blank lines dropped, lines ending
    in a backslash joined to the next."""
    steps: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        steps.append((word.upper(), rest.strip()))
    if pending.strip():
        word, _, rest = pending.strip().partition(" ")
        steps.append((word.upper(), rest.strip()))
    return steps


def _escapes(name: str) -> bool:
    return name.startswith("/") or ".." in name.split("/")


def _unpack(spool: Path, folder: Path) -> None:
    folder.mkdir()
    try:
        with tarfile.open(spool) as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extractall(folder, filter="data")
            else:  # Python 3.11 before 3.11.4: refuse what the "data" filter would
                for member in archive.getmembers():
                    if _escapes(member.name) or (member.issym() and _escapes(member.linkname)):
                        raise BadRequest(f"the build context's {member.name} leaves the context")
                archive.extractall(folder)
    except (tarfile.TarError, OSError) as exc:
        raise BadRequest(f"the build context is not a readable tar archive: {exc}") from exc


class _Build:
    """One build's state: where its files are, its working folder, its labels."""

    def __init__(self, images: FakeImages, work: Path, log: BuildLog) -> None:
        self.images = images
        self.context = work / "context"
        self.root = work / "root"
        self.log = log
        self.workdir = "/"
        self.labels: dict[str, str] = {}
        self.started = False

    async def step(self, instruction: str, argument: str) -> None:
        if instruction == "FROM":
            await anyio.to_thread.run_sync(self._start, argument.split()[0] if argument else "")
        elif not self.started:
            raise self.log.failure("no build stage in the Dockerfile: it must begin with FROM")
        elif instruction in ("COPY", "ADD"):
            await anyio.to_thread.run_sync(self._copy, shlex.split(argument))
        elif instruction == "WORKDIR":
            self.workdir = posixpath.join(self.workdir, argument)
            host_path(self.root, self.workdir).mkdir(parents=True, exist_ok=True)
        elif instruction == "RUN":
            await self._run(argument)
        elif instruction == "LABEL":
            for pair in shlex.split(argument):
                key, _, value = pair.partition("=")
                self.labels[key] = value

    def _start(self, base: str) -> None:
        self.started = True
        if base == "scratch":
            self.root.mkdir()
            return
        try:
            image = self.images.find(base)
        except ImageNotFound as exc:
            raise self.log.failure(f"pull access denied for {base}: {exc}") from exc
        self.labels.update(image.labels)
        if image.files is not None:
            shutil.copytree(image.files, self.root, symlinks=True)
        self.root.mkdir(exist_ok=True)

    def _copy(self, words: list[str]) -> None:
        if len(words) < 2:
            raise self.log.failure("COPY requires at least two arguments")
        *sources, target = words
        destination = host_path(self.root, posixpath.join(self.workdir, target))
        for source in sources:
            found = self.context / posixpath.normpath("/" + source).lstrip("/")
            if not found.exists():
                raise self.log.failure(f"COPY failed: file not found in build context: {source}")
            into = destination / found.name if target.endswith("/") else destination
            into.parent.mkdir(parents=True, exist_ok=True)
            if found.is_dir():
                shutil.copytree(found, into, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(found, into)

    async def _run(self, command: str) -> None:
        folder = host_path(self.root, self.workdir)
        folder.mkdir(parents=True, exist_ok=True)
        done = await anyio.run_process(
            ["/bin/sh", "-c", command], cwd=folder, check=False, stderr=subprocess.STDOUT
        )
        self.log.feed(done.stdout.decode(errors="replace"))
        if done.returncode:
            raise self.log.failure(
                f"The command '/bin/sh -c {command}' returned a non-zero code: {done.returncode}"
            )


async def fake_build(
    images: FakeImages,
    scratch: Path,
    context: AsyncIterator[bytes],
    *,
    tag: str,
    dockerfile: str,
    labels: Mapping[str, str],
) -> BuildOutcome:
    """Build `tag` from a tar stream of its context (see the rules)."""
    work = scratch / f"build-{secrets.token_hex(8)}"
    await anyio.to_thread.run_sync(lambda: work.mkdir(parents=True))
    try:
        spool = work / "context.tar"
        async with await anyio.open_file(spool, "wb") as out:
            async for chunk in context:
                await out.write(chunk)
        await anyio.to_thread.run_sync(_unpack, spool, work / "context")
        path = work / "context" / dockerfile
        if not path.is_file():
            raise BadRequest(f"building image {tag}: cannot locate the Dockerfile {dockerfile}")
        steps = parse(await anyio.to_thread.run_sync(path.read_text))
        log = BuildLog(tag)
        unknown = [word for word, _ in steps if word not in STEPS]
        if unknown:
            raise log.failure(f"dockerfile parse error: unknown instruction: {unknown[0]}")
        build = _Build(images, work, log)
        for number, (instruction, argument) in enumerate(steps, 1):
            log.feed(f"Step {number}/{len(steps)} : {instruction} {argument}\n")
            await build.step(instruction, argument)
        if not build.started:
            raise log.failure("the Dockerfile has no FROM")
        merged = {**build.labels, **labels}
        image = await anyio.to_thread.run_sync(images.commit, tag, build.root, merged)
        log.feed(f"Successfully built {image.image_id[7:19]}\nSuccessfully tagged {tag}\n")
        return BuildOutcome(image_id=image.image_id, output=log.lines)
    finally:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(work, ignore_errors=True))


__all__ = ["fake_build", "parse"]
