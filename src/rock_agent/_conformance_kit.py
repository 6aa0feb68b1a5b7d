"""What the runtime conformance checks are written with: `check`, sandboxes, runs, tar streams.

Rules:
- `check(condition, message)` is the only way a check fails on its own: it raises
  `AssertionError` with the message, also under ``python -O`` (which strips `assert`).
- A check makes its own sandboxes (fresh ids, one owner: this process's `local_owner`, so the
  leak check of the tests knows them) and removes them on every exit (`sandbox`).
- Every wait on the runtime is bounded by `STEP_TIMEOUT` (a hung runtime fails the check);
  nothing is timed.
"""

from __future__ import annotations

import io
import secrets
import tarfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from rock_core import local_owner
from rock_core.protocol import SandboxSpec

from ._runtime import ContainerRuntime, Process

OWNER = local_owner()
STEP_TIMEOUT = 60.0  # seconds one step may take before the check fails (a hung runtime)


def check(condition: object, message: object) -> None:
    """Fail the running check with `message` unless `condition` holds."""
    if not condition:
        raise AssertionError(message)


def new_id(what: str) -> str:
    """A fresh sandbox id for a check."""
    return f"conf-{what}-{secrets.token_hex(4)}"


def spec(image: str, cpus: float = 1.0) -> SandboxSpec:
    """The spec of a check's sandboxes."""
    return SandboxSpec(image=image, memory=256 << 20, cpus=cpus)


@asynccontextmanager
async def sandbox(runtime: ContainerRuntime, image: str, what: str) -> AsyncIterator[str]:
    """A new running sandbox's id, removed on the way out."""
    sandbox_id = new_id(what)
    try:
        await runtime.create(sandbox_id, spec(image), OWNER, runtime.uid)
        yield sandbox_id
    finally:
        with anyio.CancelScope(shield=True):
            await runtime.remove(sandbox_id)


async def collect(process: Process) -> tuple[bytes, bytes]:
    """All of a process's output: (stdout, stderr)."""
    out, err = bytearray(), bytearray()
    with anyio.fail_after(STEP_TIMEOUT):
        while (chunk := await process.read()) is not None:
            (out if chunk.stream == "stdout" else err).extend(chunk.data)
    return bytes(out), bytes(err)


async def run(
    runtime: ContainerRuntime, sandbox_id: str, script: str, cwd: str = "/"
) -> tuple[bytes, int | None]:
    """Run `script` in folder `cwd`: (its output, its exit code). Scripts name files by paths
    relative to `cwd` (a fake runtime's processes see the host's files at absolute paths)."""
    process = await runtime.exec(sandbox_id, ["/bin/sh", "-c", script], cwd=cwd, stdin=False)
    try:
        out, _ = await collect(process)
        return out, await process.wait()
    finally:
        await process.aclose()


def make_tar(files: dict[str, bytes], folders: tuple[str, ...] = ()) -> bytes:
    """A tar archive of `folders` (first) and `files`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in folders:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    """`data` as a stream of small chunks."""
    for at in range(0, len(data), 1000):
        yield data[at : at + 1000]


async def read_tar(runtime: ContainerRuntime, sandbox_id: str, path: str) -> dict[str, bytes]:
    """`path` of the sandbox, by member name: a file's content, or b"<folder>"."""
    data = bytearray()
    with anyio.fail_after(STEP_TIMEOUT):
        async for chunk in runtime.get_archive(sandbox_id, path):
            data += chunk
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as archive:
        for member in archive:
            extracted = archive.extractfile(member) if member.isfile() else None
            found[member.name.rstrip("/")] = extracted.read() if extracted else b"<folder>"
    return found


__all__ = [
    "OWNER",
    "STEP_TIMEOUT",
    "check",
    "chunks",
    "collect",
    "make_tar",
    "new_id",
    "read_tar",
    "run",
    "sandbox",
    "spec",
]
