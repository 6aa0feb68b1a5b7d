"""Connecting inside a sandbox's network namespace, from the engine's host, by its init's pid.

Rules:
- Sandboxes usually have no network (mode "none": loopback only), so the agent cannot reach
  them by address. It connects from inside instead: a short-lived thread enters the container's
  network namespace (``setns`` on ``/proc/<pid>/ns/net``), creates and connects the socket there
  and exits. A socket stays in the namespace it was made in, so the event loop then uses it like
  any other; the loop's own thread never changes namespace, and a thread that did is never
  reused. This works the same for "none" and "bridge" sandboxes, and needs a root agent, or
  (rootless Podman) the user whose user namespace the sandbox's is, through a child (`_userns`).
- A connect may take up to `CONNECT_TIMEOUT`, so the threads waiting for connects have a
  limiter of their own (`CONNECT_THREADS` at once): slow connects never starve anyio's default
  thread pool. A cancelled connect does not wait for its thread: whichever ends last, the
  caller or the thread, closes the socket, so none is left to the garbage collector.
- Connection refused is `NotFound` (nothing listens there); a namespace the agent may not
  enter is `BadRequest`; one gone meanwhile `SandboxFailed`.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import threading
from collections.abc import Callable
from functools import partial

import anyio
from anyio.abc import SocketStream
from anyio.lowlevel import RunVar

from rock_core import BadRequest, NotFound, SandboxFailed, TimedOut

from ._userns import needs_userns, socket_in_userns

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT = 10.0
#: Connects waited for at once; more wait their turn (anyio's default thread pool is not used).
CONNECT_THREADS = 64
_libc = ctypes.CDLL(None, use_errno=True)
_connect_limiter: RunVar[anyio.CapacityLimiter] = RunVar("rock_agent_connect_limiter")


def _enter_netns(pid: int) -> None:
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns: {os.strerror(errno)}")
    finally:
        os.close(fd)


class _Connect:
    """One socket made (connected, or bound) inside the network namespace of `pid`, in a
    thread used only for it.

    The outcome waits under a lock until the caller `claim`s it; a caller that gives up calls
    `abandon`, and the socket is closed by whoever comes last: `abandon`, or the thread.
    """

    def __init__(self, pid: int, make: Callable[[], socket.socket]) -> None:
        self._pid = pid
        self._make = make  # runs in the namespace: makes the socket, connected or bound
        self._lock = threading.Lock()
        self._abandoned = False
        self._outcome: socket.socket | BaseException | None = None

    def run(self) -> None:
        """Connect in a new thread and wait for it (call from a worker thread)."""
        pid = self._pid
        thread = threading.Thread(target=self._work, name=f"rock-netns-{pid}", daemon=True)
        thread.start()
        thread.join()

    def _work(self) -> None:
        outcome: socket.socket | BaseException
        try:
            if needs_userns(self._pid):  # rootless Podman, a non-root agent: `_userns`
                outcome = socket_in_userns(self._pid, self._make)
            else:
                _enter_netns(self._pid)
                outcome = self._make()
        except BaseException as exc:
            outcome = exc
        with self._lock:
            if not self._abandoned:
                self._outcome = outcome
                return
        if isinstance(outcome, socket.socket):
            outcome.close()

    def claim(self) -> socket.socket:
        """The connected socket, now the caller's; or the connect's error, raised."""
        with self._lock:
            outcome, self._outcome = self._outcome, None
        assert outcome is not None, "claimed before the connecting thread ended"
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def abandon(self) -> None:
        """The caller gives up: close the socket now if it is there, else when it comes."""
        with self._lock:
            self._abandoned = True
            outcome, self._outcome = self._outcome, None
        if isinstance(outcome, socket.socket):
            outcome.close()


def _limiter() -> anyio.CapacityLimiter:
    try:
        return _connect_limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(CONNECT_THREADS)
        _connect_limiter.set(limiter)
        return limiter


def family_of(address: str) -> socket.AddressFamily:
    """The socket family of an IP address (`BadRequest` if it is not one)."""
    try:
        version = ipaddress.ip_address(address).version
    except ValueError as exc:
        raise BadRequest(f"address {address!r} is not an IP address") from exc
    return socket.AF_INET6 if version == 6 else socket.AF_INET


async def socket_inside(pid: int, make: Callable[[], socket.socket]) -> socket.socket:
    """The socket `make` creates inside the network namespace of `pid` (its errors raised)."""
    attempt = _Connect(pid, make)
    try:
        # The waiting happens in a pool thread; the namespace's thread is a fresh one (above),
        # because a thread that entered a namespace must not run anything else afterwards.
        await anyio.to_thread.run_sync(attempt.run, abandon_on_cancel=True, limiter=_limiter())
    except BaseException:
        attempt.abandon()  # cancelled: the socket, if any, is closed now or when it comes
        raise
    return attempt.claim()


def _connected(family: socket.AddressFamily, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def connect_inside(sandbox_id: str, pid: int, address: str, port: int) -> SocketStream:
    """A TCP stream to `address:port` as seen from inside the sandbox whose init is `pid`."""
    family = family_of(address)
    where = f"{address}:{port} in sandbox {sandbox_id}"
    try:
        sock = await socket_inside(pid, partial(_connected, family, address, port))
    except ConnectionRefusedError as exc:
        raise NotFound(f"nothing listens on {where} (connection refused)") from exc
    except TimeoutError as exc:
        raise TimedOut(f"connecting to {where} took over {CONNECT_TIMEOUT:g} s") from exc
    except PermissionError as exc:
        raise BadRequest(
            f"cannot enter the network of sandbox {sandbox_id}: {exc.strerror}; "
            "port forwarding needs the agent to run as root"
        ) from exc
    except FileNotFoundError as exc:
        raise SandboxFailed(f"sandbox {sandbox_id} stopped while connecting to {where}") from exc
    except OSError as exc:
        raise SandboxFailed(f"cannot connect to {where}: {exc.strerror or exc}") from exc
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return await SocketStream.from_socket(sock)
    except BaseException:
        sock.close()  # cancelled (or failed) before the stream took it over
        raise


__all__ = ["CONNECT_TIMEOUT", "connect_inside", "family_of", "socket_inside"]
