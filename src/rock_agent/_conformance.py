"""The conformance suite of the runtime seam: what every `ContainerRuntime` must do.

Each check is a plain async function ``check(runtime, image)`` that raises `AssertionError`
(or the runtime's own error) when the runtime misbehaves. `CHECKS` names them all, so a pytest
module can parametrize over them and report each on its own; `check_runtime` runs them all.
This module holds the checks of a sandbox's life; `_conformance_io` those of its processes,
files and images; `_conformance_kit` what both are written with.

Rules:
- A check makes its own sandboxes (fresh ids, one owner: this process's `local_owner`, so the
  leak check of the tests knows them) and removes them on every exit.
- `image` must be present on the runtime's engine and have `/bin/sh`, `cat` and `sleep`;
  nothing is pulled.
- Errors are checked by type and by the sandbox, path or image they name, never by the
  engine's own wording; nothing is timed. A check fails through `check`, never a bare
  `assert`, so the suite checks under ``python -O`` too.
- The suite runs on the engine's host, as the agent does: a sandbox's main process (its
  `container().pid`) is a process of this machine that this process may signal.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import anyio

from rock_core import AlreadyExists, RockError, SandboxFailed, SandboxNotFound

from ._conformance_archive import check_image_archive
from ._conformance_cancel import check_cancelled_create
from ._conformance_io import (
    check_archive_round_trip,
    check_build,
    check_exec_output_and_exit_codes,
    check_exec_refusals,
    check_images,
    check_listen,
    check_stdin_eof,
)
from ._conformance_kit import (
    OWNER,
    STEP_TIMEOUT,
    check,
    chunks,
    make_tar,
    new_id,
    read_tar,
    run,
    sandbox,
    spec,
)
from ._conformance_logs import check_logs
from ._conformance_net import check_network_policy
from ._conformance_pause import check_pause_and_resume, check_pause_refusals
from ._conformance_term import check_terminal
from ._labels import owner_key
from ._runtime import ContainerRuntime, EngineEvent

Check = Callable[[ContainerRuntime, str], Awaitable[None]]
MakeRuntime = Callable[[], AbstractAsyncContextManager[ContainerRuntime]]

SIGKILLED = 128 + signal.SIGKILL  # the exit code of a main process killed by SIGKILL


async def check_create_is_idempotent(runtime: ContainerRuntime, image: str) -> None:
    """The same create twice is one sandbox, running, listed for its owner."""
    async with sandbox(runtime, image, "idem") as sandbox_id:
        first = await runtime.inspect(sandbox_id)
        again = await runtime.create(sandbox_id, spec(image), OWNER, runtime.uid)
        check(again.container_id == first.container_id, "a retried create made a new container")
        state = (again.state, again.owner, again.owner_uid)
        check(state == ("running", OWNER, runtime.uid), f"(state, owner, uid) are {state}")
        check(again.spec == spec(image), f"the spec came back as {again.spec!r}")
        detail = await runtime.container(sandbox_id)
        check(
            detail.running and detail.pid > 0 and detail.container_id == first.container_id,
            detail,
        )
        listed = await runtime.list_sandboxes(owner=owner_key(runtime.uid, OWNER))
        ids = [i.sandbox_id for i in listed]
        check(ids == [sandbox_id], f"the owner's listing is {ids}")
        everyone = await runtime.list_sandboxes()
        check(sandbox_id in [i.sandbox_id for i in everyone], "missing from the full listing")


async def check_conflicting_create(runtime: ContainerRuntime, image: str) -> None:
    """Another spec, or another owner, for a taken id is `AlreadyExists`; nothing changes."""
    async with sandbox(runtime, image, "conflict") as sandbox_id:
        before = await runtime.inspect(sandbox_id)
        try:
            await runtime.create(sandbox_id, spec(image, cpus=0.5), OWNER, runtime.uid)
        except AlreadyExists as exc:
            check(sandbox_id in str(exc) and "spec" in str(exc), exc)
        else:
            raise AssertionError("a create with another spec was accepted")
        try:
            await runtime.create(sandbox_id, spec(image), OWNER + "-other", runtime.uid)
        except AlreadyExists as exc:
            check(sandbox_id in str(exc) and "owner" in str(exc), exc)
        else:
            raise AssertionError("a create by another owner was accepted")
        after = await runtime.inspect(sandbox_id)
        check(after.container_id == before.container_id, "a refused create changed the sandbox")


async def check_stop_and_start(runtime: ContainerRuntime, image: str) -> None:
    """Stop keeps the files; a stopped sandbox refuses processes; start runs it again."""
    async with sandbox(runtime, image, "stop") as sandbox_id:
        await runtime.put_archive(sandbox_id, "/tmp", chunks(make_tar({"kept": b"yes"})))
        with anyio.fail_after(STEP_TIMEOUT):
            await runtime.stop(sandbox_id, 2)
            await runtime.stop(sandbox_id, 2)  # stopped stays stopped
        info = await runtime.inspect(sandbox_id)
        detail = await runtime.container(sandbox_id)
        check(info.state == "exited" and not detail.running and detail.pid == 0, detail)
        check(detail.finished_at >= detail.started_at > 0, detail)
        await _refuses_processes(runtime, sandbox_id)
        with anyio.fail_after(STEP_TIMEOUT):
            await runtime.start(sandbox_id)
            await runtime.start(sandbox_id)  # running stays running
        state = (await runtime.inspect(sandbox_id)).state
        check(state == "running", f"started again, it is {state!r}")
        ran = await run(runtime, sandbox_id, "cat kept", cwd="/tmp")
        check(ran == (b"yes", 0), f"a file kept over the stop reads {ran!r}")
        found = await read_tar(runtime, sandbox_id, "/tmp/kept")
        check(found == {"kept": b"yes"}, f"/tmp/kept came back as {found!r}")


async def _refuses_processes(runtime: ContainerRuntime, sandbox_id: str) -> None:
    try:
        await runtime.exec(sandbox_id, ["true"])
    except SandboxFailed as exc:
        check(sandbox_id in str(exc), exc)
    else:
        raise AssertionError("a stopped sandbox started a process")


async def check_remove(runtime: ContainerRuntime, image: str) -> None:
    """Remove makes the sandbox unknown; removing it again is no error."""
    async with sandbox(runtime, image, "remove") as sandbox_id:
        with anyio.fail_after(STEP_TIMEOUT):
            await runtime.remove(sandbox_id)
            await runtime.remove(sandbox_id)
        try:
            await runtime.inspect(sandbox_id)
        except SandboxNotFound as exc:
            check(sandbox_id in str(exc), exc)
        else:
            raise AssertionError("a removed sandbox is still there")
        listed = [i.sandbox_id for i in await runtime.list_sandboxes()]
        check(sandbox_id not in listed, "a removed sandbox is still listed")


async def _events_until(
    runtime: ContainerRuntime, since: float, sandbox_id: str, last: str
) -> list[EngineEvent]:
    """The sandbox's events from `since` up to its first `last` one."""
    seen: list[EngineEvent] = []
    with anyio.fail_after(STEP_TIMEOUT):
        async for event in runtime.events(since):
            if event.sandbox_id == sandbox_id:
                seen.append(event)
                if event.action == last:
                    break
    return seen


async def check_event_order(runtime: ContainerRuntime, image: str) -> None:
    """Create, stop, start and remove are start, die, start, die, destroy, in order."""
    since = time.time() - 1.0  # the engine's clock may be coarser than ours
    sandbox_id = new_id("events")
    try:
        created = await runtime.create(sandbox_id, spec(image), OWNER, runtime.uid)
        with anyio.fail_after(STEP_TIMEOUT):
            await runtime.stop(sandbox_id, 2)
            await runtime.start(sandbox_id)
    finally:
        with anyio.CancelScope(shield=True):
            await runtime.remove(sandbox_id)
    seen = await _events_until(runtime, since, sandbox_id, "destroy")
    actions = [e.action for e in seen]
    check(actions == ["start", "die", "start", "die", "destroy"], f"events {actions}")
    check(
        {(e.container_id, e.owner, e.owner_uid) for e in seen}
        == {(created.container_id, OWNER, runtime.uid)},
        f"events name other containers or owners: {seen}",
    )
    check([e.time for e in seen] == sorted(e.time for e in seen), "events out of time order")
    check(seen[1].exit_code is not None and seen[0].exit_code is None, seen[:2])


async def check_main_process_exit(runtime: ContainerRuntime, image: str) -> None:
    """A sandbox whose main process ends on its own (here: SIGKILLed from this host, as a
    crash would end it) stops: a "die" with exit code 137, then `exited` with that code, not
    running, refusing processes; start runs it again."""
    since = time.time() - 1.0
    async with sandbox(runtime, image, "crash") as sandbox_id:
        pid = (await runtime.container(sandbox_id)).pid
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError as exc:
            raise AssertionError(
                f"cannot SIGKILL the main process {pid} of sandbox {sandbox_id} from here "
                f"({exc.strerror or exc}): run the suite on the engine's host, as the agent"
            ) from exc
        seen = await _events_until(runtime, since, sandbox_id, "die")
        died = seen[-1]
        check([e.action for e in seen] == ["start", "die"], f"events {seen}")
        check(died.exit_code == SIGKILLED, f"the die event's exit code is {died.exit_code}")
        info = await runtime.inspect(sandbox_id)
        check((info.state, info.exit_code) == ("exited", SIGKILLED), info)
        detail = await runtime.container(sandbox_id)
        check(not detail.running and detail.exit_code == SIGKILLED, detail)
        check(detail.pid == 0 and not detail.oom_killed, detail)
        await _refuses_processes(runtime, sandbox_id)
        with anyio.fail_after(STEP_TIMEOUT):
            await runtime.start(sandbox_id)
        ran = await run(runtime, sandbox_id, "echo back")
        check(ran == (b"back\n", 0), f"started again after a crash, it ran {ran!r}")


async def check_not_found(runtime: ContainerRuntime, image: str) -> None:
    """Every method naming a sandbox raises `SandboxNotFound` naming it (remove: no error)."""
    sandbox_id = new_id("none")
    attempts: dict[str, Callable[[], Awaitable[object]]] = {
        "inspect": lambda: runtime.inspect(sandbox_id),
        "container": lambda: runtime.container(sandbox_id),
        "start": lambda: runtime.start(sandbox_id),
        "stop": lambda: runtime.stop(sandbox_id, 1),
        "exec": lambda: runtime.exec(sandbox_id, ["true"]),
        "connect": lambda: runtime.connect(sandbox_id, "127.0.0.1", 9),
        "listen": lambda: runtime.listen(sandbox_id, "127.0.0.1", 0),
        "get_archive": lambda: read_tar(runtime, sandbox_id, "/tmp"),
        "put_archive": lambda: runtime.put_archive(sandbox_id, "/tmp", chunks(make_tar({}))),
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
            check(sandbox_id in str(exc), f"{name}: {exc}")
        else:
            raise AssertionError(f"{name} of a missing sandbox did not raise SandboxNotFound")
    await runtime.remove(sandbox_id)
    listed = [i.sandbox_id for i in await runtime.list_sandboxes()]
    check(sandbox_id not in listed, "removing a missing sandbox listed it")


CHECKS: dict[str, Check] = {
    "create_is_idempotent": check_create_is_idempotent,
    "conflicting_create": check_conflicting_create,
    "stop_and_start": check_stop_and_start,
    "remove": check_remove,
    "cancelled_create": check_cancelled_create,
    "exec_output_and_exit_codes": check_exec_output_and_exit_codes,
    "exec_refusals": check_exec_refusals,
    "stdin_eof": check_stdin_eof,
    "archive_round_trip": check_archive_round_trip,
    "event_order": check_event_order,
    "main_process_exit": check_main_process_exit,
    "not_found": check_not_found,
    "images": check_images,
    "listen": check_listen,
    "build": check_build,
    "logs": check_logs,
    "pause_and_resume": check_pause_and_resume,
    "pause_refusals": check_pause_refusals,
    "terminal": check_terminal,
    "image_archive": check_image_archive,
    "network_policy": check_network_policy,
}


async def check_runtime(make_runtime: MakeRuntime, image: str) -> None:
    """Run every check of `CHECKS`, each on a fresh runtime from `make_runtime()` (an async
    context manager); the first failure raises, naming its check."""
    for name, check_one in CHECKS.items():
        async with make_runtime() as runtime:
            try:
                await check_one(runtime, image)
            except (AssertionError, RockError) as exc:
                raise AssertionError(f"runtime check {name!r} failed: {exc!r}") from exc


__all__ = ["CHECKS", "Check", "MakeRuntime", "check_runtime"]
