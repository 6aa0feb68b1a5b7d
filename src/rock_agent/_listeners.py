"""Listening inside a sandbox: the runtimes' `PortListener`, for host ports reached from inside.

Rules:
- The socket is made and bound where the sandbox's programs can reach it: inside the
  sandbox's network namespace for Docker (`listen_inside`, by the same short-lived thread that
  connects there, see `_netns`), on this host for the fake (`listen_here`, whose sandboxes
  share the host's network). Once bound, the event loop accepts on it like on any socket.
- The port is bound with SO_REUSEADDR, so a listener made again on the same port after a link
  broke does not wait for the old connections' TIME_WAIT.
- A taken port is `AlreadyExists`; an address the sandbox does not have is `BadRequest`; the
  namespace gone meanwhile is `SandboxFailed`.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from functools import partial

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener, SocketStream

from rock_core import AlreadyExists, BadRequest, SandboxFailed

from ._netns import family_of, socket_inside

BACKLOG = 128


class SocketPortListener:
    """A `PortListener` over a bound, listening socket (wherever it was made)."""

    def __init__(self, listener: SocketListener) -> None:
        self._listener = listener
        self.port: int = int(listener.extra(SocketAttribute.local_address)[1])

    async def accept(self) -> SocketStream:
        """The next connection (TCP_NODELAY set: interactive protocols are not delayed)."""
        stream = await self._listener.accept()
        raw = stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return stream

    async def aclose(self) -> None:
        """Stop listening."""
        await self._listener.aclose()


def _bound(family: socket.AddressFamily, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _translate(exc: OSError, sandbox_id: str, address: str, port: int) -> Exception:
    where = f"{address}:{port} in sandbox {sandbox_id}"
    if exc.errno == errno.EADDRINUSE:
        return AlreadyExists(f"cannot listen on {where}: the port is in use")
    if exc.errno == errno.EADDRNOTAVAIL:
        return BadRequest(f"cannot listen on {where}: the sandbox has no such address")
    if isinstance(exc, PermissionError):
        return BadRequest(
            f"cannot listen on {where}: {exc.strerror}; "
            "reaching host ports needs the agent to run as root"
        )
    if isinstance(exc, FileNotFoundError):
        return SandboxFailed(f"sandbox {sandbox_id} stopped while listening on {where}")
    return SandboxFailed(f"cannot listen on {where}: {exc.strerror or exc}")


async def _wrap(sock: socket.socket) -> SocketPortListener:
    try:
        return SocketPortListener(await SocketListener.from_socket(sock))
    except BaseException:
        sock.close()  # cancelled (or failed) before the listener took it over
        raise


async def listen_inside(sandbox_id: str, pid: int, address: str, port: int) -> SocketPortListener:
    """A listener on `address:port` inside the network namespace of the sandbox's init `pid`."""
    family = family_of(address)
    try:
        sock = await socket_inside(pid, partial(_bound, family, address, port))
    except OSError as exc:
        raise _translate(exc, sandbox_id, address, port) from exc
    return await _wrap(sock)


async def listen_here(sandbox_id: str, address: str, port: int) -> SocketPortListener:
    """A listener on `address:port` of this host (for a runtime whose sandboxes share it)."""
    family = family_of(address)
    try:
        sock = _bound(family, address, port)
    except OSError as exc:
        raise _translate(exc, sandbox_id, address, port) from exc
    await anyio.lowlevel.checkpoint()
    return await _wrap(sock)


def reset(stream: ByteStream) -> None:
    """Make the coming close of a TCP stream a reset: its peer sees a failure, not an end."""
    with contextlib.suppress(OSError, anyio.TypedAttributeLookupError):
        sock = stream.extra(SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


__all__ = ["SocketPortListener", "listen_here", "listen_inside", "reset"]
