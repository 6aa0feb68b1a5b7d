"""The DNS filter of one sandbox: answers only the names its policy allows (asyncio, UDP+TCP).

Rules:
- It faces the sandbox, whose root may send anything: only the header and the question name
  are parsed (`question_name`), with every length checked; a packet that cannot be parsed is
  answered FORMERR if it has a header, else dropped. Nothing else of a query is interpreted.
- One question per query. An allowed name is forwarded as it came to the host's resolver (the
  first ``nameserver`` of /etc/resolv.conf, as the agent sees it) and the answer relayed; any
  other is answered NXDOMAIN at once (a final answer, so no resolver retries elsewhere).
- UDP is callbacks only: a query's id is swapped for a fresh one on the upstream socket and
  swapped back on the answer; at most `MAX_PENDING` queries wait, the oldest dropped first,
  and any older than `PENDING_TTL` is forgotten. TCP takes `MAX_TCP` connections at once, each
  one query at a time, its reading, answering and writing back under `TCP_TIMEOUT`; `aclose`
  closes them all.
- It listens on the sandbox's bridge gateway (the sandbox's rules send port 53 there, DNAT),
  on a port the kernel picks: an agent that is not root can listen there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import struct
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rock_core.protocol import dns_allows

log = logging.getLogger("rock_agent")

MAX_PENDING = 256
PENDING_TTL = 10.0  # seconds a forwarded UDP query waits for its answer
MAX_TCP = 16
TCP_TIMEOUT = 10.0
NXDOMAIN, FORMERR = 3, 1


def question_name(packet: bytes) -> str | None:
    """The question name of a query (lower case, no final dot); None if it is not one
    well-formed query with exactly one question."""
    if len(packet) < 12:
        return None
    flags, qdcount = struct.unpack_from("!HH", packet, 2)
    if flags & 0x8000 or qdcount != 1:  # an answer, or not one question
        return None
    labels: list[str] = []
    at = 12
    while True:
        if at >= len(packet):
            return None
        size = packet[at]
        at += 1
        if size == 0:
            break
        if size > 63 or at + size > len(packet):  # a compression pointer has no place here
            return None
        label = packet[at : at + size]
        if not all(0x21 <= b < 0x7F and b != 0x2E for b in label):
            return None
        labels.append(label.decode("ascii").lower())
        at += size
    if at + 4 > len(packet) or not labels or sum(len(x) + 1 for x in labels) > 254:
        return None
    return ".".join(labels)


def _question_end(packet: bytes) -> int:
    at = 12
    while packet[at]:
        at += packet[at] + 1
    return at + 5


def answer_with(packet: bytes, rcode: int) -> bytes | None:
    """A reply to `packet` with only its question and `rcode`; None if it has no header."""
    if len(packet) < 12:
        return None
    ident, flags = struct.unpack_from("!HH", packet, 0)
    flags = 0x8000 | (flags & 0x7900) | 0x0080 | rcode  # QR, opcode and RD kept, RA set
    question = b""
    if question_name(packet) is not None:
        question = packet[12 : _question_end(packet)]
    return struct.pack("!HHHHHH", ident, flags, 1 if question else 0, 0, 0, 0) + question


def host_resolver(path: str = "/etc/resolv.conf") -> str:
    """The first nameserver of the host's resolv.conf (127.0.0.1 if it names none)."""
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return parts[1]
    return "127.0.0.1"


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, owner: DnsFilter) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.owner.upstream_answer(data)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, owner: DnsFilter) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.owner.query(data, addr)


class DnsFilter:
    """The filter of one sandbox: `open()` it, read `port`, `aclose()` it."""

    def __init__(
        self, address: str, names: Sequence[str], upstream: str = "", upstream_port: int = 53
    ) -> None:
        self.address = address
        self.names = names
        self.upstream = upstream or host_resolver()
        self.upstream_port = upstream_port
        self.port = 0
        self._listen: asyncio.DatagramTransport | None = None
        self._up: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._pending: OrderedDict[int, tuple[Any, bytes, float]] = OrderedDict()
        self._writers: set[asyncio.StreamWriter] = set()
        self.refused = 0
        self.forwarded = 0

    async def open(self) -> DnsFilter:
        """Listen (UDP and TCP on one port) and connect to the upstream resolver."""
        loop = asyncio.get_running_loop()
        self._tcp = await asyncio.start_server(self._serve_tcp, self.address, 0)
        self.port = self._tcp.sockets[0].getsockname()[1]
        try:
            self._listen, _ = await loop.create_datagram_endpoint(
                lambda: _Listener(self), local_addr=(self.address, self.port)
            )
            self._up, _ = await loop.create_datagram_endpoint(
                lambda: _Upstream(self), remote_addr=(self.upstream, self.upstream_port)
            )
        except BaseException:
            await self.aclose()
            raise
        return self

    def allowed(self, packet: bytes) -> bool | None:
        """True to forward, False to refuse, None for a malformed packet."""
        name = question_name(packet)
        if name is None:
            return None
        return dns_allows(self.names, name)

    def query(self, packet: bytes, addr: Any) -> None:
        """A UDP query from the sandbox."""
        verdict = self.allowed(packet)
        if not verdict or self._up is None:
            reply = answer_with(packet, FORMERR if verdict is None else NXDOMAIN)
            self.refused += 1
            if reply is not None and self._listen is not None:
                self._listen.sendto(reply, addr)
            return
        now = time.monotonic()
        while self._pending and (
            len(self._pending) >= MAX_PENDING
            or next(iter(self._pending.values()))[2] < now - PENDING_TTL
        ):
            self._pending.popitem(last=False)
        ident = secrets.randbelow(1 << 16)
        while ident in self._pending:
            ident = secrets.randbelow(1 << 16)
        self._pending[ident] = (addr, packet[:2], now)
        self.forwarded += 1
        self._up.sendto(struct.pack("!H", ident) + packet[2:])

    def upstream_answer(self, data: bytes) -> None:
        """An answer of the host's resolver: back to the sandbox, with the query's own id."""
        if len(data) < 12 or self._listen is None:
            return
        waiting = self._pending.pop(struct.unpack_from("!H", data)[0], None)
        if waiting is not None:
            addr, ident, _ = waiting
            self._listen.sendto(ident + data[2:], addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= MAX_TCP:
            writer.close()
            return
        self._writers.add(writer)
        try:
            while True:
                async with asyncio.timeout(TCP_TIMEOUT):  # a reader that never reads too
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    packet = await reader.readexactly(size)
                    reply = await self._tcp_reply(packet)
                    if reply is None:
                        return
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _tcp_reply(self, packet: bytes) -> bytes | None:
        verdict = self.allowed(packet)
        if not verdict:
            self.refused += 1
            return answer_with(packet, FORMERR if verdict is None else NXDOMAIN)
        self.forwarded += 1
        reader, writer = await asyncio.open_connection(self.upstream, self.upstream_port)
        try:
            writer.write(struct.pack("!H", len(packet)) + packet)
            await writer.drain()
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            return await reader.readexactly(size)
        finally:
            writer.close()

    async def aclose(self) -> None:
        """Stop listening and drop what waits."""
        for transport in (self._listen, self._up):
            if transport is not None:
                transport.close()
        self._listen = self._up = None
        for writer in list(self._writers):
            writer.close()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()
            self._tcp = None
        self._pending.clear()


__all__ = ["DnsFilter", "answer_with", "host_resolver", "question_name"]
