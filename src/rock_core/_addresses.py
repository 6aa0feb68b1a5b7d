"""Host addresses: what `open_cluster` accepts, parsed once, with ``[01-40]`` ranges expanded.

- ``local``: a private agent started as a child process (the single-machine default).
- ``unix:///path/agent.sock``: an agent listening on a unix socket on this machine.
- ``ssh://[user@]host[:port][?socket=PATH&agent=COMMAND]``: an agent on another machine,
  reached over SSH only. ``host`` may be an alias of ``~/.ssh/config``. ``socket`` names the
  agent's unix socket there (default: the systemd unit's ``/run/rock-agent/agent.sock``, then
  whatever ``rock-agent ensure`` reports); ``agent`` is the command that runs ``rock-agent``
  on that host (default ``rock-agent``).

A range ``[a-b]`` in the host part stands for every number from a to b, zero-padded to the
width of ``a``: ``ssh://cpu-[01-40]`` is forty hosts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec

from ._errors import BadRequest

DEFAULT_SOCKET = "/run/rock-agent/agent.sock"
_RANGE = re.compile(r"\[(\d+)-(\d+)\]")
_MAX_EXPANSION = 10_000


class HostAddress(msgspec.Struct, frozen=True, kw_only=True):
    """One parsed host address."""

    text: str  # as the user wrote it (after range expansion)
    scheme: str  # "local", "unix" or "ssh"
    host: str = ""
    user: str | None = None
    port: int | None = None
    path: str = ""  # unix: the socket; ssh: the agent socket asked for, if any
    agent: str = "rock-agent"


def expand(addresses: Iterable[str]) -> list[str]:
    """Expand every ``[a-b]`` range; keep the order, refuse duplicates."""
    out: list[str] = []
    for address in addresses:
        out.extend(_expand_one(address))
    seen: set[str] = set()
    for address in out:
        if address in seen:
            raise BadRequest(f"host {address!r} is listed twice")
        seen.add(address)
    return out


def _expand_one(address: str) -> list[str]:
    match = _RANGE.search(address)
    if match is None:
        return [address]
    low, high = match.group(1), match.group(2)
    if len(high) > 9 or len(low) > 9:  # also keeps `int` below Python's digit limit
        raise BadRequest(f"range [{low}-{high}] in host {address!r} is too large")
    if int(high) < int(low):
        raise BadRequest(f"empty range [{low}-{high}] in host {address!r}")
    if int(high) - int(low) >= _MAX_EXPANSION:
        raise BadRequest(f"range [{low}-{high}] in host {address!r} is too large")
    width = len(low) if low.startswith("0") else 0
    head, tail = address[: match.start()], address[match.end() :]
    out: list[str] = []
    for number in range(int(low), int(high) + 1):
        out.extend(_expand_one(f"{head}{number:0{width}d}{tail}"))
        if len(out) > _MAX_EXPANSION:  # ranges in one host multiply: stop before they do
            raise BadRequest(f"the ranges in host {address!r} are too large")
    return out


def parse(address: str) -> HostAddress:
    """Parse one address (ranges already expanded); a bad one raises `BadRequest`."""
    if address == "local":
        return HostAddress(text=address, scheme="local")
    if address.startswith("unix://"):
        path = address[len("unix://") :]
        if not path.startswith("/"):
            raise BadRequest(f"host {address!r}: a unix socket path must be absolute")
        return HostAddress(text=address, scheme="unix", path=path)
    if address.startswith("ssh://"):
        return _parse_ssh(address)
    raise BadRequest(
        f"cannot reach host {address!r}: use 'local', 'unix:///path/to/agent.sock' or "
        "'ssh://[user@]host[:port]'"
    )


def _parse_ssh(address: str) -> HostAddress:
    try:
        parts = urlsplit(address)
    except ValueError as exc:  # an unclosed ``[`` of an IPv6 host, among others
        raise BadRequest(f"host {address!r}: {exc}") from exc
    if not parts.hostname:
        raise BadRequest(f"host {address!r} names no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise BadRequest(f"host {address!r} has a bad port: {exc}") from exc
    if parts.path not in ("", "/"):
        raise BadRequest(
            f"host {address!r}: put the agent socket in '?socket=PATH', not in the path"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"socket", "agent"})
    if unknown:
        raise BadRequest(
            f"host {address!r}: unknown option(s) {', '.join(unknown)} (known: socket, agent)"
        )
    socket = query.get("socket", [""])[-1]
    if socket and not socket.startswith("/"):
        raise BadRequest(f"host {address!r}: the agent socket path must be absolute")
    agent = query.get("agent", ["rock-agent"])[-1] or "rock-agent"
    return HostAddress(
        text=address,
        scheme="ssh",
        host=parts.hostname,
        user=unquote(parts.username) if parts.username else None,
        port=port,
        path=socket,
        agent=agent,
    )


__all__ = ["DEFAULT_SOCKET", "HostAddress", "expand", "parse"]
