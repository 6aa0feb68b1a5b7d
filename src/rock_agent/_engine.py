"""The engine boundary: a bound on every Engine API call, the one mapping of its failures,
the client, and what this engine can enforce (disk limits).

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
- Whether this engine can enforce a `disk` limit is told from its info and the mount table
  (`disk_limit_problem`), never found out by a create that fails.
- A call that makes something is awaited even by a cancelled caller (`made_anyway`): the engine
  carries out a request it got, so what it made for a caller gone meanwhile is undone here,
  never left for a reaper that listed before the engine was done.

Exec streams (a process in a sandbox, and the runtime's refusals to start one) are
`_exec_stream`'s.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import aiodocker
import aiohttp
import anyio
from aiodocker.exceptions import DockerError

from rock_core import (
    BadRequest,
    EngineUnavailable,
    ProtocolError,
    RockError,
    SandboxFailed,
    SandboxNotFound,
    TimedOut,
    TransportError,
)

from ._engine_timing import timed
from ._start_failure import stopped

T = TypeVar("T")

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
    """`engine_errors` for calls that must be done within `seconds`, else `TimedOut`; timed
    for the agent's metrics (`_engine_timing`)."""
    with engine_errors(what, not_found=not_found), timed(what):
        try:
            with anyio.fail_after(seconds):
                yield
        except TimeoutError as exc:
            if isinstance(exc, RockError):
                raise
            raise TimedOut(
                f"{what}: the Docker engine did not answer within {seconds:g} s"
            ) from exc


async def made_anyway(
    make: Callable[[], Awaitable[T]], undo: Callable[[T], Awaitable[object]]
) -> T:
    """What `make` (a bounded engine call that makes something) made, awaited even when the
    caller is cancelled meanwhile; then, for a cancelled caller, `undo` it (shielded) and let
    the cancellation go on (module rules)."""
    with anyio.CancelScope(shield=True):
        made = await make()
    try:
        await anyio.lowlevel.checkpoint_if_cancelled()
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            await undo(made)
        raise
    return made


def _answered(exc: DockerError, what: str, not_found: type[RockError]) -> RockError:
    message = exc.message if isinstance(exc.message, str) else str(exc.message)
    if exc.status == 900:  # aiodocker's code for "the request failed on the way"
        return _broken(exc.__context__ or exc, what)
    if exc.status == 404:
        return not_found(f"{what}: {message}")
    # 409 for most requests; an exec's start that races the container's end answers 500.
    if exc.status in (409, 500) and "is not running" in message:
        return stopped(what, message)
    if exc.status in (400, 409):
        return BadRequest(f"{what}: {message}")
    return SandboxFailed(f"{what}: engine answered {exc.status}: {message}")


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
    "disk_limit_problem",
    "engine_call",
    "engine_errors",
    "engine_unavailable",
    "open_docker",
    "unreachable",
]
