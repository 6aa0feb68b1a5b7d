"""Network policies without Docker: parsing entries, rendering the nftables script, and the
DNS filter (its parser against malformed packets, and a live filter over a fake upstream)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rock_agent import _dns_filter
from rock_agent._dns_filter import FORMERR, NXDOMAIN, DnsFilter, answer_with, question_name
from rock_agent._netpolicy import Target, resolve, ruleset
from rock_core import BadRequest, NetworkPolicy
from rock_core.protocol import AllowRule, dns_allows, parse_allow

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the agent's DNS filter is asyncio's


def query(name: str, ident: int = 0x1234, qdcount: int = 1) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, qdcount, 0, 0, 0) + labels + b"\0\1\0\1"


def test_allow_entries_parse_into_networks_hosts_and_ports() -> None:
    assert parse_allow("10.0.0.0/8") == AllowRule(ipaddress.ip_network("10.0.0.0/8"), "", None)
    assert parse_allow("1.2.3.4:80") == AllowRule(ipaddress.ip_network("1.2.3.4/32"), "", 80)
    assert parse_allow("Example.org:443") == AllowRule(None, "example.org", 443)
    assert parse_allow("[::1]:22") == AllowRule(ipaddress.ip_network("::1/128"), "", 22)
    assert parse_allow("2001:db8::/32").network == ipaddress.ip_network("2001:db8::/32")


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("10.0.0.1/8", "host bits set"),
        ("1.2.3.4:0", "port '0' must be a number from 1 to 65535"),
        ("1.2.3.4:70000", "port '70000' must be a number from 1 to 65535"),
        ("host:nan", "port 'nan'"),
        ("", "must be a CIDR, IP or host name"),
        (" 1.2.3.4", "no surrounding spaces"),
        ("a\x00b", "no NUL byte"),
        ("[::1]22", r"\[ADDRESS\]:PORT"),
        ("bad_host!", "is not a host name"),
        ("300.1.1.1", "is not a CIDR or IP address"),
    ],
)
def test_bad_allow_entries_are_bad_requests(entry: str, why: str) -> None:
    with pytest.raises(BadRequest, match=why):
        NetworkPolicy(allow=[entry])


def test_bad_policies_are_bad_requests() -> None:
    with pytest.raises(BadRequest, match="a DNS entry must be a name"):
        NetworkPolicy(dns=[""])
    with pytest.raises(BadRequest, match="is not a host name"):
        NetworkPolicy(dns=["*."])
    with pytest.raises(BadRequest, match="allow must be a list of strings"):
        NetworkPolicy(allow="1.2.3.4")  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="over 256 entries"):
        NetworkPolicy(allow=["1.2.3.4"] * 257)


def test_dns_patterns_match_names_and_suffixes() -> None:
    names = NetworkPolicy(dns=["PyPI.org", "*.debian.org"]).dns
    assert names == ("pypi.org", "*.debian.org")
    assert dns_allows(names, "pypi.org.") and dns_allows(names, "PYPI.ORG")
    assert dns_allows(names, "deb.debian.org") and dns_allows(names, "a.b.debian.org")
    assert not dns_allows(names, "debian.org")  # a suffix pattern names what is below it
    assert not dns_allows(names, "evildebian.org") and not dns_allows(names, "x.pypi.org")


def test_ruleset_allows_listed_targets_rejects_the_rest_and_redirects_dns() -> None:
    targets = [
        Target(ipaddress.ip_network("10.0.0.0/8"), None),
        Target(ipaddress.ip_network("1.2.3.4/32"), 80),
        Target(ipaddress.ip_network("2001:db8::/32"), 443),
    ]
    script = ruleset(targets, ("172.17.0.1", 5300))
    assert script.startswith("table inet rock_policy\ndelete table inet rock_policy\n")
    for line in [
        "type filter hook output priority 0; policy drop;",
        'oif "lo" accept',
        "ct state established,related accept",
        "ip daddr 10.0.0.0/8 accept",
        "ip daddr 1.2.3.4 tcp dport 80 accept",
        "ip daddr 1.2.3.4 udp dport 80 accept",
        "ip6 daddr 2001:db8::/32 tcp dport 443 accept",
        "ip daddr 172.17.0.1 udp dport 5300 accept",
        "meta l4proto tcp reject with tcp reset",
        "reject with icmpx admin-prohibited",
        "meta nfproto ipv4 udp dport 53 dnat ip to 172.17.0.1:5300",
        "meta nfproto ipv4 tcp dport 53 dnat ip to 172.17.0.1:5300",
    ]:
        assert f"    {line}\n" in script, line
    without_dns = ruleset(targets, None)
    assert "dnat" not in without_dns and "5300" not in without_dns


def test_question_names_of_well_formed_and_malformed_packets() -> None:
    assert question_name(query("Deb.Debian.org")) == "deb.debian.org"
    good = query("pypi.org")
    assert question_name(good[:11]) is None  # no whole header
    assert question_name(good[:-4]) is None  # no type and class
    assert question_name(good[:15]) is None  # a label cut short
    assert question_name(query("pypi.org", qdcount=2)) is None
    assert question_name(query("pypi.org", qdcount=0)) is None
    answer = bytearray(good)
    answer[2] |= 0x80
    assert question_name(bytes(answer)) is None  # an answer, not a query
    pointer = good[:12] + b"\xc0\x0c" + b"\0\1\0\1"
    assert question_name(pointer) is None
    assert question_name(good[:12] + b"\x03a\x00b\x00\0\1\0\1") is None  # NUL inside a label
    assert question_name(good[:12] + b"\0\0\1\0\1") is None  # the root name: nothing to allow
    for size in range(len(good)):  # no prefix of a query raises
        question_name(good[:size])


def test_answers_keep_the_id_and_question_and_say_why() -> None:
    reply = answer_with(query("evil.org", ident=7), NXDOMAIN)
    assert reply is not None
    ident, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", reply)
    assert (ident, flags & 0x8000, flags & 0xF, qd, an, ns, ar) == (7, 0x8000, NXDOMAIN, 1, 0, 0, 0)
    assert question_name(reply[:2] + b"\1\0" + reply[4:]) == "evil.org"
    garbage = answer_with(b"\0\x09" + b"\xff" * 14, FORMERR)
    assert garbage is not None and garbage[3] & 0xF == FORMERR and garbage[5] == 0
    assert answer_with(b"\0\1", FORMERR) is None


class _Upstream(asyncio.DatagramProtocol):
    """A resolver that answers every query with its own id and one byte more."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport  # a datagram transport (no such class at run time)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.transport.sendto(data[:2] + b"\x81\x80" + data[4:] + b"!", addr)


@pytest.fixture
async def dns_filter() -> AsyncIterator[DnsFilter]:
    loop = asyncio.get_running_loop()
    upstream, _ = await loop.create_datagram_endpoint(_Upstream, local_addr=("127.0.0.1", 0))
    port = upstream.get_extra_info("sockname")[1]
    opened = await DnsFilter("127.0.0.1", ("pypi.org",), "127.0.0.1", port).open()
    try:
        yield opened
    finally:
        await opened.aclose()
        upstream.close()


async def _ask(port: int, packet: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, packet)
        async with asyncio.timeout(10):
            return await loop.sock_recv(sock, 4096)


async def test_filter_forwards_allowed_names_and_refuses_the_rest(dns_filter: DnsFilter) -> None:
    allowed = query("PyPI.org", ident=0xBEEF)
    reply = await _ask(dns_filter.port, allowed)
    assert reply == allowed[:2] + b"\x81\x80" + allowed[4:] + b"!"  # its own id back
    refused = await _ask(dns_filter.port, query("deb.debian.org", ident=9))
    assert refused[:2] == b"\0\x09" and refused[3] & 0xF == NXDOMAIN
    malformed = await _ask(dns_filter.port, b"\0\x0a" + b"\xff" * 12)
    assert malformed[3] & 0xF == FORMERR
    assert (dns_filter.forwarded, dns_filter.refused) == (1, 2)


async def test_filter_over_tcp_refuses_what_is_not_allowed(dns_filter: DnsFilter) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", dns_filter.port)
    try:
        packet = query("example.org", ident=3)
        writer.write(struct.pack("!H", len(packet)) + packet)
        async with asyncio.timeout(10):
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            reply = await reader.readexactly(size)
        assert reply[:2] == b"\0\x03" and reply[3] & 0xF == NXDOMAIN
    finally:
        writer.close()


async def test_host_names_are_resolved_and_pinned_when_applied() -> None:
    targets = await resolve(AllowRule(None, "localhost", 8080))
    assert Target(ipaddress.ip_network("127.0.0.1/32"), 8080) in targets
    assert all(t.port == 8080 for t in targets)
    with pytest.raises(BadRequest, match=r"host 'no-such-host\.invalid' does not resolve"):
        await resolve(parse_allow("no-such-host.invalid"))


async def test_a_tcp_client_that_never_reads_is_dropped_after_the_timeout(
    dns_filter: DnsFilter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandbox that sends queries and never reads the answers fills the buffers: the filter
    gives up on it after `TCP_TIMEOUT` rather than holding one of its `MAX_TCP` places."""
    monkeypatch.setattr(_dns_filter, "TCP_TIMEOUT", 0.5)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", dns_filter.port))
    sock.setblocking(False)
    packet = query("example.org", ident=3)
    burst = (struct.pack("!H", len(packet)) + packet) * 2000
    try:
        async with asyncio.timeout(20):
            for _ in range(200):  # until the filter stops reading: its writes are stuck
                with contextlib.suppress(BlockingIOError):
                    sock.send(burst)
                await asyncio.sleep(0.01)
            for _ in range(200):  # polled: the filter signals nothing when it drops one
                if not dns_filter._writers:
                    break
                await asyncio.sleep(0.05)
        assert not dns_filter._writers
    finally:
        sock.close()
