"""The conformance checks of pausing: what every `ContainerRuntime` must do to pause and resume.

Rules (those of `_conformance`, whose `CHECKS` holds these too):
- A paused sandbox's processes make no progress: a counter one of them keeps does not move
  while it is paused, and moves again after the resume. Nothing is timed: the counter is read
  twice while paused and must be equal, then waited for (bounded) once resumed.
- Pause and resume are idempotent; a paused sandbox refuses new processes (`BadRequest`
  naming it), keeps its files readable, reports state "paused", and its events say "pause"
  and "unpause". A sandbox that does not run refuses both (`BadRequest` naming it); an
  unknown one is `SandboxNotFound`. A paused sandbox stops as a running one does: resumed
  first, its processes get their SIGTERM.
"""

from __future__ import annotations

import signal
import time

import anyio

from rock_core import BadRequest, FileNotFound, SandboxNotFound

from ._conformance_kit import STEP_TIMEOUT, check, new_id, read_tar, run, sandbox
from ._runtime import ContainerRuntime

TICKER = "while :; do echo x >> ticks; sleep 0.05; done"


async def _ticks(runtime: ContainerRuntime, sandbox_id: str) -> int:
    try:
        found = await read_tar(runtime, sandbox_id, "/tmp/ticks")
    except FileNotFound:
        return 0  # not written yet
    return found.get("ticks", b"").count(b"x")


async def _ticks_above(runtime: ContainerRuntime, sandbox_id: str, floor: int) -> int:
    with anyio.fail_after(STEP_TIMEOUT):
        while True:
            count = await _ticks(runtime, sandbox_id)
            if count > floor:
                return count
            await anyio.sleep(0.05)


async def check_pause_and_resume(runtime: ContainerRuntime, image: str) -> None:
    """A paused sandbox is frozen and says so; resumed, it goes on where it stood."""
    since = time.time() - 1.0
    async with sandbox(runtime, image, "pause") as sandbox_id:
        ticker = await runtime.exec(sandbox_id, ["/bin/sh", "-c", TICKER], cwd="/tmp")
        try:
            await _ticks_above(runtime, sandbox_id, 0)
            with anyio.fail_after(STEP_TIMEOUT):
                await runtime.pause(sandbox_id)
                await runtime.pause(sandbox_id)  # paused stays paused
            state = (await runtime.inspect(sandbox_id)).state
            check(state == "paused", f"paused, it is {state!r}")
            detail = await runtime.container(sandbox_id)
            check(detail.running and detail.status == "paused", detail)
            frozen = await _ticks(runtime, sandbox_id)
            await anyio.sleep(0.3)
            later = await _ticks(runtime, sandbox_id)
            check(later == frozen, f"a paused process went on counting: {frozen} -> {later}")
            try:
                await runtime.exec(sandbox_id, ["true"])
            except BadRequest as exc:
                check(sandbox_id in str(exc) and "paused" in str(exc), exc)
            else:
                raise AssertionError("a paused sandbox started a process")
            with anyio.fail_after(STEP_TIMEOUT):
                await runtime.resume(sandbox_id)
                await runtime.resume(sandbox_id)  # running stays running
            state = (await runtime.inspect(sandbox_id)).state
            check(state == "running", f"resumed, it is {state!r}")
            await _ticks_above(runtime, sandbox_id, later)
            ran = await run(runtime, sandbox_id, "echo thawed")
            check(ran == (b"thawed\n", 0), f"a command after the resume gave {ran!r}")
        finally:
            await ticker.aclose()
    actions = []
    with anyio.fail_after(STEP_TIMEOUT):
        async for event in runtime.events(since):
            if event.sandbox_id == sandbox_id:
                actions.append(event.action)
                if event.action == "destroy":
                    break
    check(actions == ["start", "pause", "unpause", "die", "destroy"], f"events {actions}")


async def check_pause_refusals(runtime: ContainerRuntime, image: str) -> None:
    """Only a running sandbox pauses or resumes; an unknown one is not found."""
    async with sandbox(runtime, image, "pause-stopped") as sandbox_id:
        with anyio.fail_after(STEP_TIMEOUT):
            await runtime.pause(sandbox_id)
            await runtime.stop(sandbox_id, 2)  # a paused sandbox stops too
        info = await runtime.inspect(sandbox_id)
        check(info.state == "exited", f"stopped while paused, it is {info.state!r}")
        # Resumed before its SIGTERM, not SIGKILLed after the grace while frozen.
        check(info.exit_code == 128 + signal.SIGTERM, f"its exit code is {info.exit_code}")
        for name, attempt in (("pause", runtime.pause), ("resume", runtime.resume)):
            try:
                await attempt(sandbox_id)
            except BadRequest as exc:
                check(sandbox_id in str(exc) and "not running" in str(exc), f"{name}: {exc}")
            else:
                raise AssertionError(f"{name} of a stopped sandbox did not raise BadRequest")
    missing = new_id("pause-missing")
    for name, attempt in (("pause", runtime.pause), ("resume", runtime.resume)):
        try:
            await attempt(missing)
        except SandboxNotFound as exc:
            check(missing in str(exc), f"{name}: {exc}")
        else:
            raise AssertionError(f"{name} of a missing sandbox did not raise SandboxNotFound")


__all__ = ["check_pause_and_resume", "check_pause_refusals"]
