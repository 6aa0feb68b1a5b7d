"""A `NetworkPolicy` as an nftables ruleset for a sandbox's network namespace (no I/O but
name resolution).

Rules:
- One table, ``inet rock_policy``, owns everything; the script deletes and re-creates it, so
  applying a policy again (a restart, a new agent) replaces it whole, never adds to it.
- Egress: loopback and the replies of allowed connections (established, related) pass; then
  the allowed networks (every protocol, ICMP included, without a port; TCP and UDP to that port
  with one); everything else is rejected at once (TCP reset, ICMP admin-prohibited for the
  rest), so a denied connect fails fast instead of timing out.
- DNS: with a `dns` list, every query to port 53 (UDP and TCP, any server the sandbox names)
  is redirected (DNAT, IPv4) to the agent's filter for this sandbox (`_dns_filter`), which
  answers only the allowed names; without one, port 53 is denied like any other.
- Host names of `allow` are resolved here, once, when the policy is applied: their addresses
  are pinned in the rules until the next apply (a name that does not resolve is `BadRequest`).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import NamedTuple

import anyio

from rock_core import BadRequest
from rock_core.protocol import AllowRule, NetworkPolicy

TABLE = "rock_policy"
RESOLVE_TIMEOUT = 10.0  # seconds the agent waits for one host name of `allow`
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Target(NamedTuple):
    """A resolved `allow` entry: a network and a port (None: every port and protocol)."""

    network: IpNetwork
    port: int | None


def _daddr(network: IpNetwork) -> str:
    family = "ip" if network.version == 4 else "ip6"
    whole = network.prefixlen == network.max_prefixlen
    return f"{family} daddr {network.network_address if whole else network.with_prefixlen}"


def _accept(target: Target) -> list[str]:
    where = _daddr(target.network)
    if target.port is None:
        return [f"{where} accept"]
    return [f"{where} tcp dport {target.port} accept", f"{where} udp dport {target.port} accept"]


def ruleset(targets: list[Target], dns: tuple[str, int] | None) -> str:
    """The nft script of a policy: `targets` allowed, DNS redirected to `dns` (address, port)
    or denied."""
    out = [
        f"table inet {TABLE}",  # made first, so the delete below never fails
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "  chain egress {",
        "    type filter hook output priority 0; policy drop;",
        '    oif "lo" accept',
        "    ct state established,related accept",
    ]
    if dns is not None:
        address, port = dns
        out += [f"    ip daddr {address} tcp dport {port} accept"]
        out += [f"    ip daddr {address} udp dport {port} accept"]
    for target in targets:
        out += [f"    {line}" for line in _accept(target)]
    out += [
        "    meta l4proto tcp reject with tcp reset",
        "    reject with icmpx admin-prohibited",
        "  }",
    ]
    if dns is not None:
        address, port = dns
        out += [
            "  chain dns {",
            "    type nat hook output priority -100; policy accept;",
            f"    meta nfproto ipv4 udp dport 53 dnat ip to {address}:{port}",
            f"    meta nfproto ipv4 tcp dport 53 dnat ip to {address}:{port}",
            "  }",
        ]
    out.append("}")
    return "\n".join(out) + "\n"


async def resolve(rule: AllowRule) -> list[Target]:
    """The targets of one `allow` entry; a host name becomes one per address it has now."""
    if rule.network is not None:
        return [Target(rule.network, rule.port)]
    found = []
    with anyio.move_on_after(RESOLVE_TIMEOUT):
        try:
            found = await anyio.getaddrinfo(rule.host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise BadRequest(
                f"network policy: host {rule.host!r} does not resolve ({exc})"
            ) from exc
    if not found:
        raise BadRequest(
            f"network policy: host {rule.host!r} did not resolve within {RESOLVE_TIMEOUT:g} s"
        )
    addresses = sorted({str(info[4][0]) for info in found})
    return [Target(ipaddress.ip_network(a), rule.port) for a in addresses]


async def targets_of(policy: NetworkPolicy) -> list[Target]:
    """Every target of a policy, host names resolved now (and pinned)."""
    return [target for rule in policy.rules() for target in await resolve(rule)]


__all__ = ["TABLE", "Target", "resolve", "ruleset", "targets_of"]
