"""Any-owner operations of an administrator's cluster (`admin=True`, the `rock` CLI).

Rules:
- They act by sandbox id on every connected host, whoever owns the sandbox; a host whose
  link is down is skipped and named when nothing was found.
- A listing is by host id (`sandboxes_by_host`), so a caller can show where each sandbox is;
  `list_host_sandboxes` is the same listing flattened. A host whose link breaks during the
  listing is left out with a warning in the log, so the other hosts are still listed.
- They do I/O only: what a removal means for the cluster's own records (a removed sandbox of
  ours is `deleted` and its room given back) is the state's (`RemovedByAdmin`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ._errors import SandboxNotFound, TransportError
from ._link import LinkState
from ._protocol import Done, ListSandboxes, RemoveSandbox, SandboxInfo, SandboxListReply
from ._records import Host

log = logging.getLogger("rock_core")


def _connected(hosts: Iterable[Host]) -> list[Host]:
    return [h for h in hosts if h.state == LinkState.CONNECTED]


async def sandboxes_by_host(hosts: Iterable[Host], owner: str = "") -> dict[str, list[SandboxInfo]]:
    """Every sandbox on every connected host, by host id (all owners unless one is named)."""
    found: dict[str, list[SandboxInfo]] = {}
    for host in _connected(hosts):
        try:
            reply = await host.link().call(ListSandboxes(owner=owner), SandboxListReply)
        except TransportError as exc:
            log.warning("host %s is left out of the listing: %s", host.host_id, exc)
            continue
        found[host.host_id] = list(reply.sandboxes)
    return found


async def list_host_sandboxes(hosts: Iterable[Host], owner: str = "") -> list[SandboxInfo]:
    """Every sandbox on every connected host (all owners unless one is named)."""
    by_host = await sandboxes_by_host(hosts, owner)
    return [info for found in by_host.values() for info in found]


async def remove_any(hosts: Iterable[Host], sandbox_id: str) -> None:
    """Remove a sandbox by id on whichever host has it (`SandboxNotFound` if none has)."""
    hosts = list(hosts)
    away = [h.host_id for h in hosts if h.state != LinkState.CONNECTED]
    for host in _connected(hosts):
        conn = host.link()
        try:
            await conn.call(RemoveSandbox(sandbox_id=sandbox_id), Done)
        except SandboxNotFound:
            continue
        return
    also = f" (hosts not reachable now: {', '.join(away)})" if away else ""
    raise SandboxNotFound(f"no sandbox {sandbox_id!r} on any host{also}")


__all__ = ["list_host_sandboxes", "remove_any", "sandboxes_by_host"]
