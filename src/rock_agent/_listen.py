"""The socket agent's listener: accept connections, learn who is calling, never die of either.

Rules:
- Who connects is what the kernel says (`SO_PEERCRED`): the peer's uid scopes its owners (see
  `rock_core.serving.Principal`). Over SSH the peer is sshd's session process, which runs as
  the SSH user, so that user's uid is the scope.
- Accepting never ends the agent: out of file descriptors (`EMFILE`, `ENFILE`) or memory, the
  listener logs, waits a moment and accepts again; every connection's failure stays its own.
- At most `max_connections` connections are served at once; one more is closed at once (its
  client sees end of stream), so a flood of idle clients cannot exhaust the agent. Clients
  that never finish their handshake are dropped by the endpoint's handshake deadline.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from anyio.abc import SocketAttribute, SocketStream

from rock_core.serving import ByteStream, Peer, UnixStream

log = logging.getLogger("rock_agent")

MAX_CONNECTIONS = 4096
_RETRY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_UCRED = struct.Struct("3i")  # pid, uid, gid


def peer_of(stream: SocketStream) -> Peer:
    """The credentials of a unix-socket peer (uid -1 if the kernel will not say)."""
    raw = stream.extra(SocketAttribute.raw_socket)
    try:
        pid, uid, _ = _UCRED.unpack(
            raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
    except OSError:
        return Peer(uid=-1, description="unknown peer")
    return Peer(uid=uid, pid=pid, description=f"pid {pid} uid {uid}")


def stdio_peer() -> Peer:
    """The peer of a stdio agent: the process that started it, as this user."""
    return Peer(uid=os.getuid(), pid=os.getppid(), description="parent process")


async def serve_socket(
    path: Path,
    serve: Callable[[ByteStream, Peer], Awaitable[None]],
    *,
    group: int | None = None,
    max_connections: int = MAX_CONNECTIONS,
    on_listening: Callable[[], None] = lambda: None,
) -> None:
    """Listen on the unix socket `path` (the owner's alone, or also `group`'s) until cancelled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old = os.umask(0o177)  # the socket is the owner's alone
    try:
        listener = await anyio.create_unix_listener(path)
    finally:
        os.umask(old)
    if group is not None:
        # Group first, then mode: no moment where the wrong group may connect.
        os.chown(path, -1, group)
        os.chmod(path, 0o660)
    log.info("listening", extra={"socket": str(path)})
    on_listening()
    limiter = anyio.CapacityLimiter(max_connections)

    async def handle(stream: SocketStream) -> None:
        # Served as a `UnixStream`, which owns the socket from here on (see its module).
        ours = UnixStream(stream.extra(SocketAttribute.raw_socket))
        try:
            await serve(ours, peer_of(stream))
        except Exception:
            log.exception("a connection failed")
        finally:
            limiter.release_on_behalf_of(stream)
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await ours.aclose()

    async with listener, anyio.create_task_group() as tg:
        pause = 0.05
        while True:
            try:
                stream = await listener.accept()
            except (OSError, anyio.BrokenResourceError) as exc:
                # anyio wraps the accept's OSError; the listening socket itself is still fine.
                cause = exc if isinstance(exc, OSError) else exc.__cause__
                if not isinstance(cause, OSError) or cause.errno not in _RETRY_ERRNOS:
                    raise
                log.warning("cannot accept a connection (%s): retrying in %.2f s", cause, pause)
                await anyio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            pause = 0.05
            try:
                limiter.acquire_on_behalf_of_nowait(stream)
            except anyio.WouldBlock:
                log.warning("refusing a connection: %d are open", max_connections)
                with contextlib.suppress(Exception):
                    await stream.aclose()
                continue
            tg.start_soon(handle, stream)


__all__ = ["peer_of", "serve_socket", "stdio_peer"]
