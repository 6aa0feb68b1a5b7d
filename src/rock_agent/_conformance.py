"""The conformance suite of the runtime seam: what every `ContainerRuntime` must do.

Each check is a plain async function ``check(runtime, image)`` that raises `AssertionError`
(or the runtime's own error) when the runtime misbehaves. `CHECKS` names them all, so a pytest
module can parametrize over them and report each on its own; `check_runtime` runs them all.

Rules:
- A check makes its own sandboxes (fresh ids, one owner: this process's `local_owner`, so the
  leak check of the tests knows them) and removes them on every exit.
- `image` must be present on the runtime's engine and have `/bin/sh`, `cat` and `sleep`;
  nothing is pulled.
- Errors are checked by type and by the sandbox, path or image they name, never by the
  engine's own wording; nothing is timed.
"""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio

from rock_core import (
    AlreadyExists,
    BadRequest,
    FileNotFound,
    ImageNotFound,
    RockError,
    SandboxFailed,
    SandboxNotFound,
    local_owner,
)
from rock_core.protocol import SandboxSpec

from ._labels import owner_key
from ._runtime import ContainerRuntime, EngineEvent, Process

Check = Callable[[ContainerRuntime, str], Awaitable[None]]
MakeRuntime = Callable[[], AbstractAsyncContextManager[ContainerRuntime]]

OWNER = local_owner()
STEP_TIMEOUT = 60.0  # seconds one step may take before the check fails (a hung runtime)


def _id(what: str) -> str:
    return f"conf-{what}-{secrets.token_hex(4)}"


def _spec(image: str, cpus: float = 1.0) -> SandboxSpec:
    return SandboxSpec(image=image, memory=256 << 20, cpus=cpus)


@asynccontextmanager
async def _sandbox(runtime: ContainerRuntime, image: str, what: str) -> AsyncIterator[str]:
    sandbox_id = _id(what)
    try:
        await runtime.create(sandbox_id, _spec(image), OWNER, runtime.uid)
        yield sandbox_id
    finally:
        with anyio.CancelScope(shield=True):
            await runtime.remove(sandbox_id)


async def _collect(process: Process) -> tuple[bytes, bytes]:
    out, err = bytearray(), bytearray()
    with anyio.fail_after(STEP_TIMEOUT):
        while (chunk := await process.read()) is not None:
            (out if chunk.stream == "stdout" else err).extend(chunk.data)
    return bytes(out), bytes(err)


async def _run(
    runtime: ContainerRuntime, sandbox_id: str, script: str, cwd: str = "/"
) -> tuple[bytes, int | None]:
    """Run `script` in folder `cwd`: (its output, its exit code). Scripts name files by paths
    relative to `cwd` (a fake runtime's processes see the host's files at absolute paths)."""
    process = await runtime.exec(sandbox_id, ["/bin/sh", "-c", script], cwd=cwd, stdin=False)
    try:
        out, _ = await _collect(process)
        return out, await process.wait()
    finally:
        await process.aclose()


def _tar(files: dict[str, bytes], folders: tuple[str, ...] = ()) -> bytes:
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


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for at in range(0, len(data), 1000):
        yield data[at : at + 1000]


async def _read_tar(runtime: ContainerRuntime, sandbox_id: str, path: str) -> dict[str, bytes]:
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


# ---------------------------------------------------------------------------- the checks


async def check_create_is_idempotent(runtime: ContainerRuntime, image: str) -> None:
    """The same create twice is one sandbox, running, listed for its owner."""
    async with _sandbox(runtime, image, "idem") as sandbox_id:
        first = await runtime.inspect(sandbox_id)
        again = await runtime.create(sandbox_id, _spec(image), OWNER, runtime.uid)
        assert again.container_id == first.container_id
        assert (again.state, again.owner, again.owner_uid) == ("running", OWNER, runtime.uid)
        assert again.spec == _spec(image)
        detail = await runtime.container(sandbox_id)
        assert detail.running and detail.pid > 0 and detail.container_id == first.container_id
        listed = await runtime.list_sandboxes(owner=owner_key(runtime.uid, OWNER))
        assert [i.sandbox_id for i in listed] == [sandbox_id]
        everyone = await runtime.list_sandboxes()
        assert sandbox_id in [i.sandbox_id for i in everyone]


async def check_conflicting_create(runtime: ContainerRuntime, image: str) -> None:
    """Another spec, or another owner, for a taken id is `AlreadyExists`; nothing changes."""
    async with _sandbox(runtime, image, "conflict") as sandbox_id:
        before = await runtime.inspect(sandbox_id)
        try:
            await runtime.create(sandbox_id, _spec(image, cpus=0.5), OWNER, runtime.uid)
        except AlreadyExists as exc:
            assert sandbox_id in str(exc) and "spec" in str(exc), exc
        else:
            raise AssertionError("a create with another spec was accepted")
        try:
            await runtime.create(sandbox_id, _spec(image), OWNER + "-other", runtime.uid)
        except AlreadyExists as exc:
            assert sandbox_id in str(exc) and "owner" in str(exc), exc
        else:
            raise AssertionError("a create by another owner was accepted")
        assert (await runtime.inspect(sandbox_id)).container_id == before.container_id


async def check_stop_and_start(runtime: ContainerRuntime, image: str) -> None:
    """Stop keeps the files; a stopped sandbox refuses processes; start runs it again."""
    async with _sandbox(runtime, image, "stop") as sandbox_id:
        await runtime.put_archive(sandbox_id, "/tmp", _chunks(_tar({"kept": b"yes"})))
        with anyio.fail_after(STEP_TIMEOUT):
            await runtime.stop(sandbox_id, 2)
            await runtime.stop(sandbox_id, 2)  # stopped stays stopped
        info = await runtime.inspect(sandbox_id)
        detail = await runtime.container(sandbox_id)
        assert info.state == "exited" and not detail.running and detail.pid == 0, detail
        assert detail.finished_at >= detail.started_at > 0
        try:
            await runtime.exec(sandbox_id, ["true"])
        except SandboxFailed as exc:
            assert sandbox_id in str(exc), exc
        else:
            raise AssertionError("a stopped sandbox started a process")
        with anyio.fail_after(STEP_TIMEOUT):
            await runtime.start(sandbox_id)
            await runtime.start(sandbox_id)  # running stays running
        assert (await runtime.inspect(sandbox_id)).state == "running"
        assert await _run(runtime, sandbox_id, "cat kept", cwd="/tmp") == (b"yes", 0)
        assert await _read_tar(runtime, sandbox_id, "/tmp/kept") == {"kept": b"yes"}


async def check_remove(runtime: ContainerRuntime, image: str) -> None:
    """Remove makes the sandbox unknown; removing it again is no error."""
    async with _sandbox(runtime, image, "remove") as sandbox_id:
        with anyio.fail_after(STEP_TIMEOUT):
            await runtime.remove(sandbox_id)
            await runtime.remove(sandbox_id)
        try:
            await runtime.inspect(sandbox_id)
        except SandboxNotFound as exc:
            assert sandbox_id in str(exc), exc
        else:
            raise AssertionError("a removed sandbox is still there")
        assert sandbox_id not in [i.sandbox_id for i in await runtime.list_sandboxes()]


async def check_exec_output_and_exit_codes(runtime: ContainerRuntime, image: str) -> None:
    """Stdout and stderr apart, byte-exact; the exit code; env and cwd are the given ones."""
    async with _sandbox(runtime, image, "exec") as sandbox_id:
        script = 'printf "out\\0"; printf "err" >&2; printf "$A@"; printf here > here; exit 3'
        process = await runtime.exec(
            sandbox_id, ["/bin/sh", "-c", script], env={"A": "v"}, cwd="/tmp", stdin=False
        )
        try:
            out, err = await _collect(process)
            assert (out, err) == (b"out\0v@", b"err"), (out, err)
            assert await process.wait() == 3
            state = await process.state()
            assert (state.exit_code, state.running) == (3, False), state
        finally:
            await process.aclose()
        assert await _read_tar(runtime, sandbox_id, "/tmp/here") == {"here": b"here"}
        assert await _run(runtime, sandbox_id, "exit 0") == (b"", 0)
        assert await _run(runtime, sandbox_id, "kill -9 $$") == (b"", 137)


async def check_exec_refusals(runtime: ContainerRuntime, image: str) -> None:
    """A missing program or working folder is `FileNotFound` from the process handle."""
    async with _sandbox(runtime, image, "refuse") as sandbox_id:
        for argv, cwd, named in (
            (["rock-no-such-program"], "", "rock-no-such-program"),
            (["/bin/sh", "-c", "true"], "/rock/no/such/folder", "/rock/no/such/folder"),
        ):
            process = await runtime.exec(sandbox_id, argv, cwd=cwd)
            try:
                await _collect(process)
            except FileNotFound as exc:
                assert named in str(exc) and sandbox_id in str(exc), exc
            else:
                raise AssertionError(f"{argv} in {cwd or 'the default folder'} did run")
            finally:
                await process.aclose()


async def check_stdin_eof(runtime: ContainerRuntime, image: str) -> None:
    """What is written reaches the process; closing the input is its end-of-file."""
    async with _sandbox(runtime, image, "stdin") as sandbox_id:
        process = await runtime.exec(sandbox_id, ["cat"])
        try:
            await process.write(b"hello ")
            await process.write(b"world")
            await process.close_input()
            assert await _collect(process) == (b"hello world", b"")
            assert await process.wait() == 0
        finally:
            await process.aclose()


async def check_archive_round_trip(runtime: ContainerRuntime, image: str) -> None:
    """A tar stream in comes back out (a folder with its content, one file alone); a missing
    path or folder is `FileNotFound`."""
    async with _sandbox(runtime, image, "tar") as sandbox_id:
        blob = bytes(range(256)) * 300
        archive = _tar({"box/a.txt": b"alpha\n", "box/sub/b.bin": blob}, folders=("box",))
        await runtime.put_archive(sandbox_id, "/tmp", _chunks(archive))
        got = await _read_tar(runtime, sandbox_id, "/tmp/box")
        assert got == {
            "box": b"<folder>",
            "box/a.txt": b"alpha\n",
            "box/sub": b"<folder>",
            "box/sub/b.bin": blob,
        }, sorted(got)
        assert await _read_tar(runtime, sandbox_id, "/tmp/box/a.txt") == {"a.txt": b"alpha\n"}
        assert await _run(runtime, sandbox_id, "cat box/a.txt", cwd="/tmp") == (b"alpha\n", 0)
        for attempt in (
            _read_tar(runtime, sandbox_id, "/tmp/rock-missing"),
            runtime.put_archive(sandbox_id, "/rock/missing", _chunks(archive)),
        ):
            try:
                await attempt
            except FileNotFound as exc:
                assert "missing" in str(exc), exc
            else:
                raise AssertionError("a missing path was read or written")


async def check_event_order(runtime: ContainerRuntime, image: str) -> None:
    """Create, stop, start and remove are start, die, start, die, destroy, in order."""
    since = time.time() - 1.0  # the engine's clock may be coarser than ours
    sandbox_id = _id("events")
    try:
        created = await runtime.create(sandbox_id, _spec(image), OWNER, runtime.uid)
        with anyio.fail_after(STEP_TIMEOUT):
            await runtime.stop(sandbox_id, 2)
            await runtime.start(sandbox_id)
    finally:
        with anyio.CancelScope(shield=True):
            await runtime.remove(sandbox_id)
    seen: list[EngineEvent] = []
    with anyio.fail_after(STEP_TIMEOUT):
        async for event in runtime.events(since):
            if event.sandbox_id == sandbox_id:
                seen.append(event)
            if event.action == "destroy" and event.sandbox_id == sandbox_id:
                break
    actions = [e.action for e in seen]
    assert actions == ["start", "die", "start", "die", "destroy"], actions
    assert {(e.container_id, e.owner, e.owner_uid) for e in seen} == {
        (created.container_id, OWNER, runtime.uid)
    }
    assert [e.time for e in seen] == sorted(e.time for e in seen)
    assert seen[1].exit_code is not None and seen[0].exit_code is None


async def check_not_found(runtime: ContainerRuntime, image: str) -> None:
    """Every method naming a sandbox raises `SandboxNotFound` naming it (remove: no error)."""
    sandbox_id = _id("none")
    attempts: dict[str, Callable[[], Awaitable[object]]] = {
        "inspect": lambda: runtime.inspect(sandbox_id),
        "container": lambda: runtime.container(sandbox_id),
        "start": lambda: runtime.start(sandbox_id),
        "stop": lambda: runtime.stop(sandbox_id, 1),
        "exec": lambda: runtime.exec(sandbox_id, ["true"]),
        "connect": lambda: runtime.connect(sandbox_id, "127.0.0.1", 9),
        "get_archive": lambda: _read_tar(runtime, sandbox_id, "/tmp"),
        "put_archive": lambda: runtime.put_archive(sandbox_id, "/tmp", _chunks(_tar({}))),
        "stats": lambda: runtime.stats(sandbox_id),
        "commit": lambda: runtime.commit(
            sandbox_id,
            repository="rock-conf/x",
            tag="1",
            message="",
            changes=[],
            labels={},
            pause=False,
        ),
    }
    for name, attempt in attempts.items():
        try:
            await attempt()
        except SandboxNotFound as exc:
            assert sandbox_id in str(exc), f"{name}: {exc}"
        else:
            raise AssertionError(f"{name} of a missing sandbox did not raise SandboxNotFound")
    await runtime.remove(sandbox_id)
    assert sandbox_id not in [i.sandbox_id for i in await runtime.list_sandboxes()]


async def check_images(runtime: ContainerRuntime, image: str) -> None:
    """A present image is found and needs no pull; a missing one is `ImageNotFound`; an
    unknown pull policy is `BadRequest`."""
    await runtime.ensure_image(image, "never")
    record = await runtime.inspect_image(image)
    assert record.image_id and image in [*record.tags, record.image_id], record
    assert image in await runtime.local_images() or ":" not in image
    missing = f"rock-conformance/missing:{secrets.token_hex(4)}"
    for attempt in (runtime.inspect_image(missing), runtime.ensure_image(missing, "never")):
        try:
            await attempt
        except ImageNotFound as exc:
            assert missing in str(exc), exc
        else:
            raise AssertionError(f"missing image {missing} was found")
    try:
        await runtime.ensure_image(image, "sometimes")  # type: ignore[arg-type]
    except BadRequest as exc:
        assert "sometimes" in str(exc), exc
    else:
        raise AssertionError("an unknown pull policy was accepted")


CHECKS: dict[str, Check] = {
    "create_is_idempotent": check_create_is_idempotent,
    "conflicting_create": check_conflicting_create,
    "stop_and_start": check_stop_and_start,
    "remove": check_remove,
    "exec_output_and_exit_codes": check_exec_output_and_exit_codes,
    "exec_refusals": check_exec_refusals,
    "stdin_eof": check_stdin_eof,
    "archive_round_trip": check_archive_round_trip,
    "event_order": check_event_order,
    "not_found": check_not_found,
    "images": check_images,
}


async def check_runtime(make_runtime: MakeRuntime, image: str) -> None:
    """Run every check of `CHECKS`, each on a fresh runtime from `make_runtime()` (an async
    context manager); the first failure raises, naming its check."""
    for name, check in CHECKS.items():
        async with make_runtime() as runtime:
            try:
                await check(runtime, image)
            except (AssertionError, RockError) as exc:
                raise AssertionError(f"runtime check {name!r} failed: {exc!r}") from exc


__all__ = ["CHECKS", "Check", "MakeRuntime", "check_runtime"]
