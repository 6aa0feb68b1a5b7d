"""The conformance check of a sandbox's log: what its main process writes, kept and followed.

Rules (those of `_conformance` too):
- The log is written as a container's is: by the sandbox's main process, whose stdout and
  stderr this process (on the engine's host) opens through /proc and writes to.
- Lines are UTF-8: an engine may keep its log as text (Docker's default log driver replaces
  bytes that are not UTF-8).
- An engine keeps its log a moment after the write: a check waits (bounded by
  `STEP_TIMEOUT`) until the log holds what was written; nothing is timed.
"""

from __future__ import annotations

import re
import time

import anyio

from rock_core import SandboxNotFound

from ._conformance_kit import STEP_TIMEOUT, check, new_id, sandbox
from ._runtime import ContainerRuntime, OutputChunk

STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")
LOOK_AGAIN = 0.05  # seconds between looks at a log that does not hold a write yet


async def write_main(runtime: ContainerRuntime, sandbox_id: str, fd: int, data: bytes) -> None:
    """Write `data` as the sandbox's main process would, to its stdout (1) or stderr (2)."""
    pid = (await runtime.container(sandbox_id)).pid
    path = f"/proc/{pid}/fd/{fd}"

    def write() -> None:
        with open(path, "wb", buffering=0) as out:
            out.write(data)

    try:
        await anyio.to_thread.run_sync(write)
    except OSError as exc:
        raise AssertionError(
            f"cannot write to {path}, an output of the main process of sandbox {sandbox_id} "
            f"({exc.strerror or exc}): run the suite on the engine's host, as the agent"
        ) from exc


async def read_log(
    runtime: ContainerRuntime,
    sandbox_id: str,
    *,
    tail: int | None = None,
    since: float = 0.0,
    timestamps: bool = False,
) -> list[OutputChunk]:
    """The log as it is now (no follow)."""
    found: list[OutputChunk] = []
    with anyio.fail_after(STEP_TIMEOUT):
        async for chunk in runtime.logs(
            sandbox_id, follow=False, tail=tail, since=since, timestamps=timestamps
        ):
            found.append(chunk)
    return found


def joined(chunks: list[OutputChunk], stream: str) -> bytes:
    """The bytes of one stream of a log."""
    return b"".join(c.data for c in chunks if c.stream == stream)


async def wait_for_log(
    runtime: ContainerRuntime, sandbox_id: str, stdout: bytes, stderr: bytes = b""
) -> None:
    """Wait until the log holds exactly `stdout` and `stderr`."""
    chunks: list[OutputChunk] = []
    with anyio.move_on_after(STEP_TIMEOUT):
        while True:
            chunks = await read_log(runtime, sandbox_id)
            if (joined(chunks, "stdout"), joined(chunks, "stderr")) == (stdout, stderr):
                return
            await anyio.sleep(LOOK_AGAIN)
    raise AssertionError(f"the log never held {stdout!r} and {stderr!r}; it holds {chunks}")


async def check_logs(runtime: ContainerRuntime, image: str) -> None:
    """The main process's stdout and stderr apart, byte-exact and in order; `tail` lines;
    `since`; `timestamps`; `follow` sees a later write and ends when the sandbox stops; the
    log outlives the stop; a missing sandbox is `SandboxNotFound`."""
    async with sandbox(runtime, image, "logs") as sandbox_id:
        check(await read_log(runtime, sandbox_id) == [], "a new sandbox has a log")
        await write_main(runtime, sandbox_id, 1, b"out one\n")
        await write_main(runtime, sandbox_id, 2, b"err one\n")
        await wait_for_log(runtime, sandbox_id, b"out one\n", b"err one\n")
        await write_main(runtime, sandbox_id, 1, b"out \xc3\xa9 two\n")
        await wait_for_log(runtime, sandbox_id, b"out one\nout \xc3\xa9 two\n", b"err one\n")

        last = await read_log(runtime, sandbox_id, tail=1)
        check(last == [OutputChunk("stdout", b"out \xc3\xa9 two\n")], f"tail=1 read {last}")
        check(await read_log(runtime, sandbox_id, tail=0) == [], "tail=0 read lines")
        later = await read_log(runtime, sandbox_id, since=time.time() + 3600)
        check(later == [], f"since an hour from now read {later}")
        stamped = await read_log(runtime, sandbox_id, timestamps=True)
        lines = b"".join(c.data for c in stamped).splitlines(keepends=True)
        check(len(lines) == 3 and all(STAMP.match(line) for line in lines), lines)
        bare = sorted(STAMP.sub(b"", line) for line in lines)
        check(bare == [b"err one\n", b"out one\n", b"out \xc3\xa9 two\n"], bare)

        await _check_follow(runtime, sandbox_id)
        kept = await read_log(runtime, sandbox_id)
        check(joined(kept, "stdout").endswith(b"later\n"), f"after a stop the log is {kept}")

    try:
        await read_log(runtime, new_id("none"))
    except SandboxNotFound:
        pass
    else:
        raise AssertionError("the log of a missing sandbox did not raise SandboxNotFound")


async def _check_follow(runtime: ContainerRuntime, sandbox_id: str) -> None:
    """Follow from the last line: a later write comes, a stop ends the log."""
    seen: list[OutputChunk] = []
    first, later, ended = anyio.Event(), anyio.Event(), anyio.Event()

    async def follow() -> None:
        logs = runtime.logs(sandbox_id, follow=True, tail=1, since=0.0, timestamps=False)
        async for chunk in logs:
            seen.append(chunk)
            first.set()
            if joined(seen, "stdout").endswith(b"later\n"):
                later.set()
        ended.set()

    with anyio.fail_after(STEP_TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await first.wait()  # the last line came: a write from now on is new
            await write_main(runtime, sandbox_id, 1, b"later\n")
            await later.wait()
            check(not ended.is_set(), "following ended while the sandbox ran")
            await runtime.stop(sandbox_id, 0)
    check(ended.is_set(), "following did not end when the sandbox stopped")
    out = joined(seen, "stdout")
    check(out == b"out \xc3\xa9 two\nlater\n", f"following from the last line read {seen}")
    after = await read_log(runtime, sandbox_id, tail=1)
    check(after == [OutputChunk("stdout", b"later\n")], f"after the stop, tail=1 read {after}")
    stopped: list[OutputChunk] = []
    async for chunk in runtime.logs(sandbox_id, follow=True, tail=0, since=0.0, timestamps=False):
        stopped.append(chunk)  # following a stopped sandbox's log ends at once
    check(stopped == [], f"following a stopped sandbox read {stopped}")


__all__ = ["check_logs", "read_log", "wait_for_log", "write_main"]
