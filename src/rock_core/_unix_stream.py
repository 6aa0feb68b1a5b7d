"""A byte stream over a connected unix socket that a cancelled receive cannot upset.

Why not anyio's own: on asyncio, anyio's unix stream waits for a readable socket with
`loop.add_reader(sock, future.set_result, None)`. When the receiving task is cancelled in the
same pass of the loop in which the socket became readable, the reader's callback is already
queued and sets a result on the cancelled future: the loop reports an `InvalidStateError`
"exception in callback" (a program's log shows it; a test runner fails on it). Closing a link
cancels its reader, so this happened at the end of a connection to a socket agent whenever
the agent's last bytes arrived in that very pass. Here the waits are anyio's `wait_readable`
and `wait_writable`, whose callbacks tolerate a future that is already done; the same code
runs on trio.

Rules:
- `receive` returns what one `recv` gives (at most `max_bytes`); end of stream raises
  `EndOfStream`; a reset peer `BrokenResourceError`; a closed stream `ClosedResourceError`.
- `send` sends every byte or raises; a cancelled send may have sent a part (as anyio's).
- `aclose` wakes any task waiting on the socket (it sees `ClosedResourceError`) before it
  closes the descriptor, so no wait is left on a number the kernel may give to another file.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel

Wait = Callable[[socket.socket], Awaitable[None]]


class UnixStream:
    """A connected, non-blocking unix stream socket as a `ByteStream` (module rules)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._closed = False

    @property
    def raw_socket(self) -> socket.socket:
        """The socket itself (for its peer's credentials); do not read or write it directly."""
        return self._sock

    async def receive(self, max_bytes: int = 65536, /) -> bytes:
        """What one `recv` gives, at most `max_bytes`; `EndOfStream` at the end."""
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        await anyio.lowlevel.checkpoint()
        while True:
            self._check_open()
            try:
                data = self._sock.recv(max_bytes)
            except BlockingIOError:
                await self._wait(anyio.wait_readable)
                continue
            except OSError as exc:
                raise self._failure(exc) from exc
            if not data:
                raise anyio.EndOfStream
            return data

    async def send(self, item: bytes, /) -> None:
        """Send all of `item`, waiting for room as needed."""
        await anyio.lowlevel.checkpoint()
        view = memoryview(item)
        while view:
            self._check_open()
            try:
                sent = self._sock.send(view)
            except BlockingIOError:
                await self._wait(anyio.wait_writable)
                continue
            except OSError as exc:
                raise self._failure(exc) from exc
            view = view[sent:]

    async def send_eof(self) -> None:
        """Tell the peer nothing more will be sent (the stream can still receive)."""
        self._check_open()
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise self._failure(exc) from exc

    async def aclose(self) -> None:
        """Wake whatever waits on the socket, then close it (twice is fine)."""
        if not self._closed:
            self._closed = True
            anyio.notify_closing(self._sock)
            self._sock.close()
        await anyio.lowlevel.checkpoint()

    async def _wait(self, wait: Wait) -> None:
        try:
            await wait(self._sock)
        except anyio.ClosedResourceError:
            raise anyio.ClosedResourceError from None  # closed by `aclose` meanwhile

    def _check_open(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError

    def _failure(self, exc: OSError) -> Exception:
        if self._closed or exc.errno == errno.EBADF:
            return anyio.ClosedResourceError()
        return anyio.BrokenResourceError()  # reset by the peer, or any other socket error


async def connect_unix(path: str, *, patience: float = 10.0) -> UnixStream:
    """Connect to the unix socket at `path` (raises `OSError` as `socket.connect` does).

    A listener whose backlog is full refuses with `EAGAIN` and queues nothing (Linux): the
    connect is tried again, with a growing pause, for at most `patience` seconds.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        pause, waited = 0.005, 0.0
        while True:
            try:
                sock.connect(path)
                break
            except BlockingIOError:
                if waited >= patience:
                    raise OSError(
                        errno.EAGAIN, f"the agent's socket took no connection in {patience:g} s"
                    ) from None
                await anyio.sleep(pause)
                waited += pause
                pause = min(pause * 2, 0.25)
    except BaseException:
        sock.close()
        raise
    return UnixStream(sock)


__all__ = ["UnixStream", "connect_unix"]
