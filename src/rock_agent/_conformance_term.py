"""The conformance checks of terminals: a process started with ``tty`` on a runtime.

Rules:
- As the other checks (`_conformance`): plain async functions ``check(runtime, image)``, own
  sandboxes, errors by type, nothing timed. The image has `/bin/sh` and `stty`.
- A terminal is checked through what its programs see (`stty size`), how its shell ends (its
  exit code), and what the kernel's line discipline does (``^C`` interrupts the foreground
  job, not the shell), never through the engine's wording or the echo's exact bytes.
"""

from __future__ import annotations

import anyio

from rock_core import BadRequest

from ._conformance_kit import STEP_TIMEOUT, check, sandbox
from ._runtime import ContainerRuntime, Process

PROMPT = b"<p> "  # the shell's prompt once set (its echoed command line differs)


async def _until(process: Process, wanted: bytes) -> bytes:
    """The terminal's output up to and including `wanted` (the end fails the check)."""
    seen = bytearray()
    with anyio.fail_after(STEP_TIMEOUT):
        while wanted not in seen:
            chunk = await process.read()
            check(chunk is not None, f"the terminal ended before showing {wanted!r}: {seen!r}")
            assert chunk is not None
            check(chunk.stream == "stdout", f"a terminal's output came as {chunk.stream}")
            seen += chunk.data
    return bytes(seen)


async def _rest(process: Process) -> bytes:
    seen = bytearray()
    with anyio.fail_after(STEP_TIMEOUT):
        while (chunk := await process.read()) is not None:
            seen += chunk.data
    return bytes(seen)


async def check_terminal(runtime: ContainerRuntime, image: str) -> None:
    """A process on a terminal sees its size and a resize, ``^C`` reaches its foreground job,
    and its shell's exit code is the process's; a process without one cannot be resized."""
    async with sandbox(runtime, image, "tty") as sandbox_id:
        process = await runtime.exec(sandbox_id, ["/bin/sh"], terminal=(31, 97))
        try:
            # `expr` makes the marker, so the echo of the command line never matches it.
            await process.write(b"PS1='<'p'> '; stty size; echo at-$(expr 1 + 1)\n")
            shown = await _until(process, b"at-2")
            check(b"31 97" in shown, f"stty size under a 31 x 97 terminal showed {shown!r}")
            await process.resize(42, 123)
            await process.write(b"stty size; echo at-$(expr 2 + 1)\n")
            shown = await _until(process, b"at-3")
            check(b"42 123" in shown, f"stty size after a resize to 42 x 123 showed {shown!r}")
            # `cat` in the foreground, once it runs (a line editor may read ahead of the
            # command line): a line typed then shows twice (the echo, then cat's copy).
            await process.write(b"sh -c 'echo fg-$((6*7)); exec cat'\n")
            await _until(process, b"fg-42")
            await process.write(b"ping\n")
            shown = b""
            with anyio.fail_after(STEP_TIMEOUT):
                while shown.count(b"ping") < 2:
                    shown += await _until(process, b"ping")
            await process.write(b"\x03")  # interrupts cat, not the shell: its prompt is back
            await _until(process, PROMPT)
            await process.write(b"echo alive-$(expr 4 + 1); exit 3\n")
            await _until(process, b"alive-5")
            await _rest(process)
            code = await process.wait()
            check(code == 3, f"a terminal's shell that ran `exit 3` exited {code!r}")
        finally:
            await process.aclose()
        plain = await runtime.exec(sandbox_id, ["/bin/sh", "-c", "true"], stdin=False)
        try:
            await plain.resize(10, 10)
        except BadRequest as exc:
            check(sandbox_id in str(exc), exc)
        else:
            raise AssertionError("a process without a terminal was resized")
        finally:
            await plain.aclose()


__all__ = ["check_terminal"]
