"""The Ray actor that carries the protocol's bytes to the agent on its node (issue 15).

One detached actor per node (`_ray_stream` creates it, pinned to the node): it runs inside a
Ray worker process, on that worker's asyncio loop, and relays byte streams between the core
(which calls it) and a socket agent on the node (``rock-agent serve --socket``, started by
``rock-agent ensure`` when none answers, exactly as a core reaching a host over SSH does).

Rules:
- The actor only relays bytes: ``open`` connects a fresh unix connection to the agent and
  names it with a random stream id (unique across the actor's restarts), ``send`` writes,
  ``receive`` long-polls (at most `wait` seconds, then an empty answer, so a call never
  hangs), ``close`` ends it. The handshake, the owner and its lease are the core's, inside
  the bytes.
- The agent is not the actor's child and outlives it: when the actor goes (``ray.kill``, its
  worker crashes), its connections to the agent close, and the agent's leases (not the actor)
  decide when the owners' sandboxes are reaped. A new actor on the node finds the same agent.
- Sends are numbered by offset too: the caller keeps a few in flight without waiting, and the
  actor writes them in their order whatever order Ray runs them in.
- A reply lost to a cancelled caller loses no bytes: ``receive`` names the offset it wants, so
  the chunk handed out last is handed out again until the next call asks past it. Calls on one
  stream are taken one at a time (a cancelled caller's call may still run here).
- A stream whose caller stopped calling (its program died; Ray cancels nothing for a detached
  actor) is closed after `STALE` seconds without a call, so the agent sees its owner go.
- This module imports neither ray nor rock_core: it runs in the worker, on plain asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
from dataclasses import dataclass, field

POLL = 5.0  # seconds a receive waits for bytes before it answers empty
# Seconds without a call after which a stream's caller counts as gone. As long as the default
# lease: a program whose loop stalls (a blocking call, a long pause) keeps its links as long as
# over SSH, where only the lease counts; and since the lease runs from the owner's last message,
# a dead program's sandboxes are reaped no later for it.
STALE = 60.0
MAX_STREAMS = 4096  # streams one actor relays at once
MAX_CHUNK = 1 << 20  # the most bytes one receive answers
MAX_EARLY = 64 << 20  # the most bytes of sends that came before their turn, per stream
ENSURE_TIMEOUT = 60.0


@dataclass
class _Relay:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    offset: int = 0  # where `last` starts in the stream from the agent
    last: bytes = b""  # the chunk handed out last (handed out again if asked again)
    eof: bool = False
    written: int = 0  # bytes written to the agent: the offset the next send must start at
    early: dict[int, bytes] = field(default_factory=dict)  # sends that came before their turn
    calls: int = 0  # calls running now
    touched: float = field(default_factory=lambda: asyncio.get_running_loop().time())


class RayAgentRelay:
    """The actor's class (decorated with ``ray.remote`` by the core's side, lazily)."""

    def __init__(
        self, host_id: str, socket_dir: str | None, agent: list[str] | None, idle_exit: float
    ) -> None:
        self.host_id = host_id
        # A folder per host id: several Ray nodes (agents) may share a machine.
        self.socket = f"{socket_dir or default_socket_dir()}/{host_id}/agent.sock"
        # By default the worker's own interpreter: the core's may live elsewhere on its node.
        self.agent = agent or [sys.executable, "-m", "rock_agent"]
        self.idle_exit = idle_exit
        self._streams: dict[int, _Relay] = {}
        self._resent = 0  # chunks handed out again (their first reply went to a cancelled call)
        self._ensure_lock: asyncio.Lock | None = None
        # The sweeper runs while there are streams: a Ray actor has no `async with` to own it,
        # and it must run while no call does (that is when callers have gone).
        self._sweeper: asyncio.Task[None] | None = None

    async def describe(self) -> dict[str, object]:
        """Where this actor runs and what it relays (for tests and ``rock`` diagnostics)."""
        return {
            "host_id": self.host_id,
            "socket": self.socket,
            "pid": os.getpid(),
            "streams": len(self._streams),
            "resent": self._resent,
        }

    async def open(self) -> int:
        """Connect a new stream to the agent (starting one if none answers); its id."""
        if len(self._streams) >= MAX_STREAMS:
            raise RuntimeError(f"this actor relays {MAX_STREAMS} streams already")
        try:
            reader, writer = await asyncio.open_unix_connection(self.socket)
        except OSError:
            await self._ensure()
            try:
                reader, writer = await asyncio.open_unix_connection(self.socket)
            except OSError as exc:
                raise RuntimeError(f"no agent listens on {self.socket}: {exc}") from None
        # A random id, never a count: a restarted actor counts from nothing again, and a caller
        # of the old one still calling with its id must not reach another caller's new stream.
        stream = secrets.randbits(62) + 1
        while stream in self._streams:
            stream = secrets.randbits(62) + 1
        self._streams[stream] = _Relay(reader, writer)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return stream

    async def send(self, stream: int, offset: int, data: bytes) -> None:
        """Write `data`, the bytes at `offset` of the stream to the agent, in their turn.

        The caller does not wait for one send before the next, and Ray does not order an async
        actor's calls: a send that comes early waits here (at most `MAX_EARLY` bytes), and
        one whose bytes were written already (asked twice) is ignored.
        """
        relay = self._relay(stream)
        relay.calls += 1
        try:
            if offset > relay.written:
                if sum(map(len, relay.early.values())) + len(data) > MAX_EARLY:
                    raise RuntimeError(f"stream {stream}: over {MAX_EARLY} bytes sent out of turn")
                relay.early[offset] = data
            elif offset == relay.written:
                relay.writer.write(data)
                relay.written += len(data)
                while relay.written in relay.early:
                    chunk = relay.early.pop(relay.written)
                    relay.writer.write(chunk)
                    relay.written += len(chunk)
            await relay.writer.drain()
        finally:
            self._done(relay)

    async def receive(
        self, stream: int, offset: int, max_bytes: int, wait: float
    ) -> tuple[bytes, bool]:
        """The bytes from `offset` on (at most `max_bytes`), and whether the agent closed.

        Empty and not closed: nothing came within `wait` seconds (ask again).
        """
        relay = self._relay(stream)
        relay.calls += 1
        try:
            async with relay.lock:
                if offset == relay.offset + len(relay.last):
                    relay.offset, relay.last = offset, await self._read(relay, max_bytes, wait)
                elif offset != relay.offset:
                    raise RuntimeError(
                        f"stream {stream}: offset {offset} asked, but the last chunk handed out"
                        f" spans {relay.offset}..{relay.offset + len(relay.last)}"
                    )
                else:
                    self._resent += 1
                return relay.last, relay.eof and not relay.last
        finally:
            self._done(relay)

    async def close(self, stream: int) -> None:
        """End a stream (the agent sees its connection close); a closed one is no error."""
        relay = self._streams.pop(stream, None)
        if relay is not None:
            await _shut(relay)

    async def _read(self, relay: _Relay, max_bytes: int, wait: float) -> bytes:
        if relay.eof:
            return b""
        size = max(1, min(int(max_bytes), MAX_CHUNK))
        try:
            # Cancelling a read that waits loses nothing: the bytes stay in the reader.
            data = await asyncio.wait_for(relay.reader.read(size), max(0.0, min(wait, POLL)))
        except TimeoutError:
            return b""
        except OSError:
            data = b""
        relay.eof = not data
        return data

    def _relay(self, stream: int) -> _Relay:
        relay = self._streams.get(stream)
        if relay is None:
            raise RuntimeError(f"stream {stream} is closed")
        relay.touched = asyncio.get_running_loop().time()
        return relay

    def _done(self, relay: _Relay) -> None:
        relay.calls -= 1
        relay.touched = asyncio.get_running_loop().time()

    async def _ensure(self) -> None:
        """Run ``rock-agent ensure`` for this node's socket (once at a time)."""
        if self._ensure_lock is None:
            self._ensure_lock = asyncio.Lock()
        async with self._ensure_lock:
            command = [
                *self.agent,
                "ensure",
                "--socket",
                self.socket,
                "--host-id",
                self.host_id,
                "--idle-exit",
                f"{self.idle_exit:g}",
                "--log-level",
                "WARNING",
            ]
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                _, err = await asyncio.wait_for(process.communicate(), ENSURE_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise RuntimeError(f"{' '.join(command)} took over {ENSURE_TIMEOUT:g} s") from None
            if process.returncode != 0:
                tail = err.decode(errors="replace").strip()[-2000:]
                raise RuntimeError(
                    f"{' '.join(command)} failed with status {process.returncode}: {tail}"
                )

    async def _sweep(self) -> None:
        while self._streams:
            await asyncio.sleep(STALE / 4)
            now = asyncio.get_running_loop().time()
            for stream, relay in list(self._streams.items()):
                if relay.calls == 0 and now - relay.touched > STALE:
                    del self._streams[stream]
                    await _shut(relay)


def default_socket_dir() -> str:
    """Where the node's agents listen by default: a folder of this (the worker's) user."""
    return f"/tmp/rock-ray-{os.geteuid()}"


async def _shut(relay: _Relay) -> None:
    relay.writer.close()
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(relay.writer.wait_closed(), 5.0)


__all__ = ["MAX_STREAMS", "POLL", "STALE", "RayAgentRelay", "default_socket_dir"]
