"""The links of a cluster to its hosts: one supervisor each, reporting to the cluster's state.

Rules:
- `HostLinks` turns what the supervisors see (`_supervisor`) into events for the state
  (`LinkUp`, `Listing`, `LinkDown`, `Changed`) through one `handle` callback; it decides
  nothing and holds no records. The host it gets back from the state after `LinkUp` is where
  it keeps the live connection.
- A link that comes up lists this owner's sandboxes first; then `LinkUp` and `Listing` are
  reported together, so nobody sees a host connected whose records are not reconciled yet.
  A listing that fails leaves the host in its outage (its grace timer runs on).
- Every host is connected at once; the first failure is raised, the others are logged. A
  partial connect (`failed` given) raises only when no host answered, and names the others.
- The handshake asks for the owner's lease, except from a connector that says ``leased =
  False`` (a local agent, which ends with its pipe).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import anyio.abc
from anyio.abc import TaskGroup

from ._channel import ByteStream
from ._cluster_events import Changed, Do, Event, LinkDown, LinkUp, Listing
from ._connection import AgentConnection, open_agent_connection
from ._errors import RockError
from ._hosts import Connector
from ._options import ClusterOptions
from ._protocol import ListSandboxes, SandboxChanged, SandboxListReply
from ._records import Host
from ._supervisor import supervise

log = logging.getLogger("rock_core")


class HostLinks:
    """Supervises the link to each host of one cluster; see the module's rules."""

    def __init__(
        self,
        handle: Callable[[Event], list[Do]],
        hosts: Mapping[str, Host],
        owner: str,
        options: ClusterOptions,
    ) -> None:
        self._handle = handle
        self._hosts = hosts
        self.owner = owner
        self.options = options

    async def supervise(
        self,
        connector: Connector,
        *,
        known: str | None = None,
        task_status: anyio.abc.TaskStatus[None],
    ) -> None:
        """Keep one host connected (`_supervisor`), reporting its links to the state; `known`
        is its host id when it was connected before (a host source's host that came back)."""

        async def up(conn: AgentConnection) -> None:
            nonlocal known
            host_id = conn.welcome.host_id
            self._listen(host_id, conn)
            reply = await conn.call(ListSandboxes(owner=self.owner), SandboxListReply)
            # No await from here on: the host is connected and reconciled in one step.
            self._handle(LinkUp(connector.name, conn.welcome, known))
            known = host_id
            self._hosts[host_id].connection = conn
            self._handle(Listing(host_id, reply))

        def down(error: str) -> None:
            if known is not None:
                self._handle(LinkDown(known, error))

        await supervise(
            connector,
            handshake=self._handshake,
            up=up,
            down=down,
            heartbeat=self.options.heartbeat,
            heartbeat_timeout=self.options.heartbeat_timeout,
            task_status=task_status,
        )

    def _handshake(
        self, connector: Connector, stream: ByteStream
    ) -> AbstractAsyncContextManager[AgentConnection]:
        leased = getattr(connector, "leased", True)  # a local agent ends with its pipe
        return open_agent_connection(
            stream,
            owner=self.owner,
            name=connector.name,
            lease=self.options.lease if leased else 0.0,
            admin=self.options.admin,
        )

    def _listen(self, host_id: str, connection: AgentConnection) -> None:
        """Report what the agent of `host_id` says unasked (`SandboxChanged`) to the state."""

        def on_event(change: SandboxChanged) -> None:
            self._handle(Changed(host_id, change))

        connection.on_event = on_event

    async def connect_all(
        self,
        tg: TaskGroup,
        connectors: Sequence[Connector],
        failed: dict[str, RockError] | None = None,
        run: Callable[..., Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Connect every host at once; raise the first failure (after logging the others).
        With `failed`, put the failures there by address instead, unless every host failed.
        `run(connector, task_status=...)` keeps a link instead of `supervise` (`_host_follow`)."""
        failures: list[tuple[str, RockError]] = []

        async def connect(connector: Connector) -> None:
            try:
                await tg.start(run or self.supervise, connector)
            except RockError as exc:
                failures.append((connector.name, exc))

        async with anyio.create_task_group() as starting:
            for connector in connectors:
                starting.start_soon(connect, connector)
        if failed is not None and len(failures) < len(connectors):
            failed.update(failures)
            return
        if failures:
            # The first is raised; the others would be lost, so they are logged.
            for text, exc in failures[1:]:
                log.error("cannot connect to host %s: %s", text, exc)
            first = failures[0][1]
            if len(failures) > 1:
                first.add_note(f"{len(failures)} of {len(connectors)} hosts failed to connect")
            raise first


__all__ = ["HostLinks"]
