"""The engine boundary: a bound on every Engine API call, and the one mapping of its failures.

Rules:
- No call waits forever on a wedged engine. Each kind of call has a bound (`Bounds`, from the
  named constants below): control calls (inspect, list, info, create, start, exec) tens of
  seconds, a stop its grace period plus `STOP_MARGIN`, bookkeeping that copies or measures
  layers (commit, disk usage) minutes. Streams (archives, an exec's attached output, events)
  have no overall bound: their users bound them. A pull is bounded by its progress: no word
  from the engine for `PULL_IDLE_TIMEOUT`. A bound that passes is `TimedOut` naming the call.
- Every failure of the engine becomes our tree here, ``raise ... from exc``: an engine that
  cannot be reached is `EngineUnavailable`, naming where it was looked for, why it did not
  answer and what to do; an answered error maps by status (404 not found, 400 and 409 bad
  request but for a container that is not running, else `SandboxFailed`); a request the
  engine broke off is a `TransportError`, an answer that cannot be read a `ProtocolError`.
  Nothing foreign (aiohttp, aiodocker, OSError, TimeoutError) and no bare `RockError` leaves.
- Our own errors raised inside a mapped block pass through unchanged.
- A process the container runtime could not start (its working folder, program or user is
  wrong) is an error naming that cause (`start_failure`), never a result.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiodocker
import aiohttp
import anyio
from aiodocker.exceptions import DockerError

from rock_core._errors import (
    BadRequest,
    EngineUnavailable,
    FileNotFound,
    ProtocolError,
    RockError,
    SandboxFailed,
    SandboxNotFound,
    TimedOut,
    TransportError,
)

CONTROL_TIMEOUT = 30.0  # inspect, list, info, exec create and start, image inspect
CREATE_TIMEOUT = 60.0  # create or start a container (layers, mounts, network)
STOP_MARGIN = 30.0  # a stop may take its grace period plus this
REMOVE_TIMEOUT = 60.0  # remove a container (its layer) or an image tag
COMMIT_TIMEOUT = 600.0  # a commit copies the container's writable layer
DISK_USAGE_TIMEOUT = 300.0  # the engine measures every container's layer for its report
STATS_TIMEOUT = 60.0  # one stats reading: the engine samples twice, a second apart
PULL_IDLE_TIMEOUT = 300.0  # a pull that reports no progress for this long has stalled


@dataclass(frozen=True, slots=True)
class Bounds:
    """How long each kind of engine call may take, in seconds (see the module's rules)."""

    control: float = CONTROL_TIMEOUT
    create: float = CREATE_TIMEOUT
    stop_margin: float = STOP_MARGIN
    remove: float = REMOVE_TIMEOUT
    commit: float = COMMIT_TIMEOUT
    disk_usage: float = DISK_USAGE_TIMEOUT
    stats: float = STATS_TIMEOUT
    pull_idle: float = PULL_IDLE_TIMEOUT


@contextlib.contextmanager
def engine_errors(what: str, *, not_found: type[RockError] = SandboxNotFound) -> Iterator[None]:
    """Translate every failure of the engine calls in the block (`what`) into our tree."""
    try:
        yield
    except RockError:
        raise
    except DockerError as exc:
        raise _answered(exc, what, not_found) from exc
    except TimeoutError as exc:
        raise TimedOut(f"{what}: the Docker engine did not answer in time") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise _broken(exc, what) from exc
    except ValueError as exc:  # an answer that is no JSON, or not the JSON expected
        raise ProtocolError(
            f"{what}: the Docker engine answered something unreadable: {exc}"
        ) from exc


@contextlib.contextmanager
def engine_call(
    what: str, seconds: float, *, not_found: type[RockError] = SandboxNotFound
) -> Iterator[None]:
    """`engine_errors` for calls that must be done within `seconds`, else `TimedOut`."""
    with engine_errors(what, not_found=not_found):
        try:
            with anyio.fail_after(seconds):
                yield
        except TimeoutError as exc:
            if isinstance(exc, RockError):
                raise
            raise TimedOut(
                f"{what}: the Docker engine did not answer within {seconds:g} s"
            ) from exc


def _answered(exc: DockerError, what: str, not_found: type[RockError]) -> RockError:
    message = exc.message if isinstance(exc.message, str) else str(exc.message)
    if exc.status == 900:  # aiodocker's code for "the request failed on the way"
        return _broken(exc.__context__ or exc, what)
    if exc.status == 404:
        return not_found(f"{what}: {message}")
    if exc.status == 409 and "is not running" in message:
        return stopped(what, message)
    if exc.status in (400, 409):
        return BadRequest(f"{what}: {message}")
    return SandboxFailed(f"{what}: engine answered {exc.status}: {message}")


def stopped(what: str, detail: str) -> SandboxFailed:
    """A request for a sandbox whose processes all ended (a `kill -9 -1` inside it ends its
    keepalive too)."""
    return SandboxFailed(
        f"{what}: the sandbox is not running (its processes have all ended): start it again, "
        f"or delete it ({detail})"
    )


def _broken(exc: BaseException, what: str) -> RockError:
    found = unreachable(exc)
    if found is not None:
        return found
    detail = str(exc) or type(exc).__name__
    return TransportError(f"{what}: the Docker engine broke off the request: {detail}")


def unreachable(exc: BaseException) -> EngineUnavailable | None:
    """`EngineUnavailable` if `exc`, or an error it wraps, is a failure to reach the engine."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, aiohttp.ClientConnectorError):
            path = getattr(current, "path", None)
            where = f"unix://{path}" if path else f"tcp://{current.host}:{current.port}"
            return engine_unavailable(where, current.os_error)
        current = current.__cause__ or current.__context__
    return None


def engine_unavailable(where: str, cause: OSError) -> EngineUnavailable:
    """The error for an engine at `where` that cannot be reached: the cause, and what to do."""
    if cause.errno in (errno.EACCES, errno.EPERM):
        why = "permission denied: is this user in the docker group (or root)?"
    elif cause.errno == errno.ENOENT:
        why = "no socket there: is dockerd running? (set DOCKER_HOST if it listens elsewhere)"
    elif cause.errno == errno.ECONNREFUSED:
        why = "connection refused: is dockerd running?"
    else:
        detail = cause.strerror or str(cause) or type(cause).__name__
        why = f"{detail}: is dockerd running? is this user in the docker group?"
    return EngineUnavailable(f"no Docker engine answers at {where}: {why}", engine=where)


# ---------------------------------------------------------------------------- exec start

_CWD = re.compile(r'chdir to cwd \("(?P<cwd>[^"]*)"\) set in config\.json failed: (?P<why>[^:]+)')
_PROGRAM = re.compile(r'exec: "(?P<program>[^"]*)": (?:stat [^:]*: )?(?P<why>[^:]+)')
_USER = re.compile(r"unable to find (?P<kind>user|group) (?P<name>[^:]+): (?P<why>[^\r\n]+)")
_GONE = re.compile(r"in a (deleted|stopped) state|container \S+ is not running")


def start_failure(text: str, head: str) -> RockError | None:
    """The error for a process the container runtime could not start, from what it said.

    `head` names the attempt ("cannot run 'ls' in sandbox x"). A missing working folder or
    program is `FileNotFound`, an unknown user or group, or a program that cannot be run,
    `BadRequest`; None if the text names no cause known here.
    """
    text = text.replace("\r", "").strip()
    if found := _CWD.search(text):
        cwd, why = found["cwd"], found["why"].strip()
        if why == "no such file or directory":
            return FileNotFound(f"{head}: its working folder {cwd} does not exist")
        return BadRequest(f"{head}: its working folder {cwd} cannot be used: {why}")
    if found := _PROGRAM.search(text):
        name, why = found["program"], found["why"].strip()
        if why == "executable file not found in $PATH":
            return FileNotFound(f"{head}: program {name!r} not found on the PATH")
        if why == "no such file or directory":
            return FileNotFound(f"{head}: {name} not found")
        return BadRequest(f"{head}: {name} cannot be run: {why}")
    if found := _USER.search(text):
        return BadRequest(f"{head}: no {found['kind']} {found['name']!r} in the sandbox")
    if _GONE.search(text):
        return stopped(head, text)  # between the exec's creation and its start
    return None


# ---------------------------------------------------------------------------- disk limits

# Drivers that enforce a size by themselves (btrfs and zfs through their quotas), and those
# that need project quota from the file system beneath them.
_SIZED_DRIVERS = ("btrfs", "zfs", "devicemapper", "windowsfilter")
_QUOTA_DRIVERS = ("overlay2", "vfs")
_QUOTA_OPTIONS = ("prjquota", "pquota")


def disk_limit_problem(info: dict[str, object], mountinfo: str | None) -> str | None:
    """Why this engine cannot enforce a sandbox's `disk` limit, or None if it can.

    `info` is the engine's `docker info`; `mountinfo` the text of ``/proc/self/mountinfo``
    when the engine's data folder is on this machine (None if not known): overlay2 enforces
    a size only on xfs mounted with project quota, which only the mount options tell.
    """
    driver = str(info.get("Driver") or "unknown")
    if driver in _SIZED_DRIVERS:
        return None
    if driver not in _QUOTA_DRIVERS:
        return (
            "disk limits need a storage driver that enforces them (overlay2 on xfs mounted "
            f"with pquota, btrfs, zfs or devicemapper); this engine uses {driver}"
        )
    status = info.get("DriverStatus")
    pairs = status if isinstance(status, list) else []
    backing = next(
        (str(p[1]) for p in pairs if isinstance(p, list) and p[:1] == ["Backing Filesystem"]),
        "an unknown file system",
    )
    need = f"disk limits need the {driver} storage driver on xfs mounted with pquota"
    if backing != "xfs":
        return f"{need} (this engine: {driver} on {backing})"
    options = _mount_options(mountinfo, str(info.get("DockerRootDir") or "")) if mountinfo else None
    if options is not None and not any(o in options for o in _QUOTA_OPTIONS):
        return f"{need} (this engine: {driver} on xfs without pquota)"
    return None


def _mount_options(mountinfo: str, folder: str) -> set[str] | None:
    """The options of the mount holding `folder` (per-mount and super block); None if none."""
    best: tuple[int, set[str]] | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 6:
            continue
        point = _unescape(fields[4])
        inside = folder == point or folder.startswith(point.rstrip("/") + "/")
        if not folder or not inside or (best is not None and len(point) < best[0]):
            continue
        super_options = line.split(" - ", 1)[1].split()
        options = set(fields[5].split(","))
        if len(super_options) >= 3:
            options |= set(super_options[2].split(","))
        best = (len(point), options)
    return None if best is None else best[1]


def _unescape(path: str) -> str:
    """A mount point as mountinfo writes it (octal escapes for space, tab, newline, '\\')."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), path)


# ---------------------------------------------------------------------------- exec

START_FAILURE_TEXT = 4096  # bytes of an exec's first output kept: the runtime's reason, if any
START_FAILURE_WAIT = 1.0  # seconds to wait for that reason when nobody had read it
WRITE_CHECK = 1.0  # seconds between checks that a process still runs while a write waits


class Execution:
    """One exec of a sandbox: the engine's handle, and how it ended once known."""

    def __init__(self, raw: Any, sandbox_id: str, program: str, bound: float) -> None:
        self.raw = raw
        self.sandbox_id = sandbox_id
        self.program = program
        self.ended = False
        self.pid = 0
        self.exit_code: int | None = None
        self._bound = bound

    async def state(self) -> tuple[int, int | None, bool]:
        """(host pid, exit code, running), as the engine says now."""
        with engine_call(f"inspecting a process in sandbox {self.sandbox_id}", self._bound):
            info = await self.raw.inspect()
        pid, exit_code, running = (
            int(info.get("Pid") or 0),
            info.get("ExitCode"),
            info.get("Running"),
        )
        if not running:
            self.ended, self.pid, self.exit_code = True, pid, exit_code
        return pid, exit_code, bool(running)

    async def wait_exit(self, tries: int = 50) -> int | None:
        """The exit code once the process has ended (the engine may lag a moment after its
        streams end); None if it still runs after `tries` looks."""
        exit_code = self.exit_code
        for _ in range(tries):
            if self.ended:
                return self.exit_code
            _, exit_code, _ = await self.state()
            if not self.ended:
                await anyio.sleep(0.02)
        return exit_code


class ExecStream:
    """The attached stream of an exec: its output, its input, and whether it ever started.

    The engine reports a process the runtime could not start (no such working folder, program
    or user) only as text on the stream: the exec has an exit code and no pid. That is
    checked where the stream ends, or a write to it stops: such a start is the error naming
    its cause. A write the process stops taking is checked every `WRITE_CHECK` seconds: one
    that can never finish (the process is gone) ends with an error, not after the engine's
    own timeout.
    """

    def __init__(self, execution: Execution, raw: Any) -> None:
        self.raw = raw
        self._execution = execution
        self._head = bytearray()  # the start of its output: the runtime's reason, if it failed
        self._checked = False

    async def read_out(self) -> Any:
        """The next output message (with `.stream`, 1 or 2, and `.data`); None at the end."""
        with engine_errors(f"reading a process in sandbox {self._execution.sandbox_id}"):
            message = await self.raw.read_out()
        if message is None:
            await self._check_started()
            return None
        self._keep(message)
        return message

    async def write_in(self, data: bytes) -> None:
        """Write to the process's stdin (`TransportError` if it ended before taking it).

        The hot path (a session's next command) is one write into the connection's buffer;
        only a write the process stops taking for `WRITE_CHECK` seconds is watched.
        """
        execution = self._execution
        what = f"writing to a process in sandbox {execution.sandbox_id}"
        chunk = data
        while True:
            try:
                with engine_errors(what), anyio.move_on_after(WRITE_CHECK) as waited:
                    await self.raw.write_in(chunk)
            except (RuntimeError, AssertionError) as exc:  # aiodocker: the stream was closed
                await self._check_started()  # a process that never ran: that is the error
                raise TransportError(f"{what}: the stream is closed") from exc
            except RockError:
                await self._check_started()
                raise
            if not waited.cancelled_caught:
                return
            # All of it is buffered; it has not drained for a while: is the process still there?
            chunk = b""
            await execution.state()
            if execution.ended:
                await self._check_started()
                raise TransportError(f"{what}: the process ended before it took its input")

    async def close(self) -> None:
        """Close the stream (the process may go on)."""
        await self.raw.close()

    def _keep(self, message: Any) -> None:
        if message.stream == 1 and len(self._head) < START_FAILURE_TEXT:
            self._head += message.data[: START_FAILURE_TEXT - len(self._head)]

    async def _check_started(self) -> None:
        if self._checked:
            return
        self._checked = True
        execution = self._execution
        await execution.wait_exit()
        if not (execution.ended and execution.pid == 0 and execution.exit_code is not None):
            return
        # It never ran: what it "printed" is the runtime's reason, sent at once.
        with anyio.move_on_after(START_FAILURE_WAIT), contextlib.suppress(Exception):
            while not self._head and (message := await self.raw.read_out()) is not None:
                self._keep(message)
        text = bytes(self._head).decode(errors="replace")
        head = f"cannot run {execution.program!r} in sandbox {execution.sandbox_id}"
        raise start_failure(text, head) or BadRequest(
            f"{head}: the container runtime refused: {text.strip() or 'no reason given'}"
        )


# ---------------------------------------------------------------------------- client


@contextlib.asynccontextmanager
async def open_docker(url: str | None = None) -> AsyncIterator[aiodocker.Docker]:
    """An engine client for the agent, closed on exit.

    Every open session holds one engine connection for its whole life, so a unix-socket
    engine gets a connector with no cap on connections: aiohttp's default of 100 would make
    the 101st concurrent use wait forever.
    """
    host = url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        docker = aiodocker.Docker(url=host)
        try:
            yield docker
        finally:
            with anyio.CancelScope(shield=True):
                await docker.close()
        return
    connector = aiohttp.UnixConnector(host[len("unix://") :], limit=0)
    try:
        docker = aiodocker.Docker(url="unix://localhost", connector=connector)
        try:
            yield docker
        finally:
            with anyio.CancelScope(shield=True):
                await docker.close()
    finally:
        with anyio.CancelScope(shield=True):
            await connector.close()


__all__ = [
    "Bounds",
    "ExecStream",
    "Execution",
    "disk_limit_problem",
    "engine_call",
    "engine_errors",
    "engine_unavailable",
    "open_docker",
    "start_failure",
    "stopped",
    "unreachable",
]
