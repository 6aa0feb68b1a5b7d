"""A sandbox's egress allowlist (`NetworkPolicy`), the third choice of `SandboxSpec.network`.

Rules:
- A policy is a frozen value checked when it is made and when it is decoded (the agent decodes
  it from the wire and from a container's label): a bad entry is `BadRequest` naming it, in
  the caller's process and on the agent alike (`__post_init__` runs on both paths).
- `allow` entries are ``CIDR``, ``IP``, ``HOST`` (all ports) or any of them with ``:PORT``
  (IPv6 with a port in brackets: ``[2001:db8::1]:443``). Host names are resolved by the agent
  when it applies the policy, and pinned to the addresses they had then.
- `dns` entries are names (``pypi.org``) or suffix patterns (``*.debian.org``: any name below
  it, not the name itself); the sandbox resolves only those, through the agent's filter.
- What is allowed is a plain list of `AllowRule`s (`rules()`); rendering firewall rules from
  them is the agent's business.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import NamedTuple

import msgspec

from ._errors import BadRequest

NETWORK_POLICY = "network-policy"  # the agent's capability: it enforces a `NetworkPolicy`
MAX_ENTRIES = 256
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_PORT = re.compile(r"^[0-9]{1,5}$")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowRule(NamedTuple):
    """One parsed `allow` entry: a network or a host name (exactly one is set), and a port
    (None: every port)."""

    network: IpNetwork | None
    host: str
    port: int | None


def _bad(entry: str, why: str) -> BadRequest:
    return BadRequest(f"network policy entry {entry!r}: {why}")


def _port(entry: str, text: str) -> int:
    if not _PORT.match(text) or not 1 <= int(text) <= 65535:
        raise _bad(entry, f"port {text!r} must be a number from 1 to 65535")
    return int(text)


def _host_name(entry: str, name: str) -> str:
    if len(name) > 253 or not _HOST.match(name):
        raise _bad(entry, f"{name!r} is not a host name (letters, digits, '-', '_' and dots)")
    return name.rstrip(".").lower()


def _network(entry: str, text: str) -> IpNetwork | None:
    """The network `text` names; None if it is no address at all (a host name, then)."""
    if "/" not in text and not any(c == ":" for c in text) and not _looks_numeric(text):
        return None
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise _bad(entry, f"{text!r} is not a CIDR or IP address ({exc})") from exc


def _looks_numeric(text: str) -> bool:
    return bool(text) and all(c.isdigit() or c == "." for c in text)


def parse_allow(entry: str) -> AllowRule:
    """One `allow` entry as an `AllowRule` (`BadRequest` if it is malformed)."""
    if not isinstance(entry, str) or not entry.strip():
        raise _bad(str(entry), "must be a CIDR, IP or host name, optionally with :PORT")
    if "\x00" in entry or entry != entry.strip():
        raise _bad(entry, "must hold no NUL byte and no surrounding spaces")
    port: int | None = None
    where = entry
    if entry.startswith("["):
        inside, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise _bad(entry, "an IPv6 address with a port is written [ADDRESS]:PORT")
        where, port = inside, (_port(entry, rest[1:]) if rest else None)
    elif entry.count(":") == 1:
        where, _, text = entry.partition(":")
        port = _port(entry, text)
    network = _network(entry, where)
    if network is not None:
        return AllowRule(network, "", port)
    return AllowRule(None, _host_name(entry, where), port)


def check_dns_name(entry: str) -> str:
    """A `dns` entry, lower-cased (`BadRequest` if it is malformed)."""
    if not isinstance(entry, str) or not entry:
        raise _bad(str(entry), "a DNS entry must be a name or *.SUFFIX")
    name = entry[2:] if entry.startswith("*.") else entry
    _host_name(entry, name)
    return entry.rstrip(".").lower()


def dns_allows(patterns: Sequence[str], name: str) -> bool:
    """True if the question `name` matches a `dns` entry (case and a final dot ignored)."""
    name = name.rstrip(".").lower()
    for pattern in patterns:
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]):
                return True
        elif name == pattern:
            return True
    return False


class NetworkPolicy(msgspec.Struct, kw_only=True, frozen=True):
    """An egress allowlist: the sandbox reaches only `allow` (plus loopback and the replies of
    connections it may make), and resolves only the names of `dns`.

    ``NetworkPolicy(allow=["10.0.0.0/8", "pypi.org:443"], dns=["pypi.org"])``; see
    docs/network.md for what is enforced and how.
    """

    allow: Sequence[str] = ()  # kept as a tuple
    dns: Sequence[str] = ()  # kept as a tuple, lower-cased

    def __post_init__(self) -> None:
        for field in ("allow", "dns"):
            values = getattr(self, field)
            if isinstance(values, str) or not isinstance(values, list | tuple):
                raise BadRequest(f"network policy {field} must be a list of strings")
            if len(values) > MAX_ENTRIES:
                raise BadRequest(f"network policy {field} has over {MAX_ENTRIES} entries")
        allow = tuple(self.allow)
        for entry in allow:
            parse_allow(entry)
        dns = tuple(check_dns_name(entry) for entry in self.dns)
        msgspec.structs.force_setattr(self, "allow", allow)
        msgspec.structs.force_setattr(self, "dns", dns)

    def rules(self) -> list[AllowRule]:
        """The `allow` entries, parsed."""
        return [parse_allow(entry) for entry in self.allow]

    def describe(self) -> str:
        """One line for listings: what is allowed, and which names resolve."""
        allow = ", ".join(self.allow) or "nothing"
        dns = ", ".join(self.dns) or "no names"
        return f"allow {allow}; dns {dns}"


__all__ = [
    "NETWORK_POLICY",
    "AllowRule",
    "NetworkPolicy",
    "check_dns_name",
    "dns_allows",
    "parse_allow",
]
