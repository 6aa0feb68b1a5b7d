"""Admission and the queue, seen from the cluster: features a spec needs, and bounded waits.

Rules:
- A create with a bad sandbox id or spec is refused before placement with the `BadRequest` its
  agent would give. A spec that needs what no host can do is refused before placement
  (`BadRequest` naming the hosts and the requirement); one placed on a host that cannot do it
  is refused before its create is sent. Today: a `disk` limit needs an agent that announces
  ``disk-limits``, and timeouts one that announces ``timeouts``.
- A create that finds no room waits in the scheduler's queue, and says so once, when it starts
  waiting: a warning naming what it needs and what each host has free (or that every host is
  draining); only a debug line when a host has room and it just waits for its turn.
- The wait is bounded by its queue timeout (None: no bound). When the timeout passes and the
  scheduler says the request waits only for its turn (a host has room: it waits for a start
  slot there, which frees by itself, or for older requests that will be placed), it keeps
  waiting, and looks again every `TURN_RECHECK` seconds; otherwise it raises `CapacityError`
  saying what holds the hosts and what would fit now, with ``queue_timeout`` and ``waited`` in
  its details. A request held back by the bypass rule (the oldest waiting request fits no host
  and was passed `max_bypass` times: nothing younger is placed until it is) does not wait its
  turn: the oldest may wait for a host that never comes.
- Every create that starts or stops waiting wakes `QueueWaits.changed` (progress displays).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

import anyio

from ._connection import AgentConnection
from ._errors import BadRequest, QueueTimedOut
from ._network import NETWORK_POLICY, NetworkPolicy
from ._protocol import CreateSandbox, SandboxSpec, encode_request
from ._room import Room, explain, needs
from ._scheduler import Demand

log = logging.getLogger("rock_core")

DISK_LIMITS = "disk-limits"
TURN_RECHECK = 1.0  # seconds between looks, past the timeout, at a create that waits its turn
HELD_BACK = (
    "an older request that fits no host now was passed by younger ones as often as the"
    " scheduler allows (max_bypass), so nothing younger is placed until it is"
)
_DISK_WHY = (
    "an engine limits a container's disk only with a storage driver that has quotas, such as"
    " overlay2 on xfs mounted with pquota"
)


def check_features(conn: AgentConnection, spec: SandboxSpec) -> None:
    """Refuse a spec the agent of `conn` would not honour (an older agent ignores unknown
    fields; an engine without quotas cannot limit disk)."""
    if (spec.idle_timeout, spec.lifetime, spec.auto_delete_after) != (None, None, None):
        conn.require("timeouts", "enforce timeouts (create the sandbox without them)")
    if isinstance(spec.network, NetworkPolicy):
        conn.require(NETWORK_POLICY, "enforce a network policy")
    if spec.disk and DISK_LIMITS not in conn.welcome.capabilities:
        raise BadRequest(
            f"host {conn.welcome.host_id} cannot enforce disk={spec.disk!r}: its agent does not"
            f" announce {DISK_LIMITS!r} ({_DISK_WHY}); create the sandbox without a disk limit"
        )


def check_admission(sandbox_id: str, spec: SandboxSpec, links: Iterable[AgentConnection]) -> None:
    """Refuse before placement a create its agent would refuse (a bad id or spec: the same
    `BadRequest` as when it is sent), or one no connected host could honour (`links`: the live
    connections; with none, nothing is known yet and the create's own check decides)."""
    encode_request(CreateSandbox(id=1, sandbox_id=sandbox_id, spec=spec))
    if not spec.disk:
        return
    links = list(links)
    if links and not any(DISK_LIMITS in c.welcome.capabilities for c in links):
        names = sorted(c.welcome.host_id for c in links)
        agents = (
            f"the agent of host {names[0]} does not"
            if len(names) == 1
            else f"the agents of hosts {', '.join(names)} do not"
        )
        raise BadRequest(
            f"no host can enforce disk={spec.disk!r}: {agents} announce {DISK_LIMITS!r}"
            f" ({_DISK_WHY}); create the sandbox without a disk limit"
        )


class Placed(Protocol):
    """What a create waits on: set once the scheduler placed it (`_records.Flag`)."""

    def is_set(self) -> bool: ...

    async def wait(self) -> None: ...


class HasRoom(Protocol):
    """`Scheduler.has_room`: whether a host has room for `demand` now; with `request_id`, also
    whether the bypass rule lets that queued request be placed once it has."""

    def __call__(self, demand: Demand, request_id: str | None = None) -> bool: ...


class QueueWaits:
    """The creates of one cluster that wait for room; see the module's rules.

    `room(demand)` is the cluster's view of its hosts for a demand, at the time of the call;
    `has_room(demand, request_id)` the cheap part of it: whether the queued request only waits
    for its turn. Only a create that finds no room pays for the whole view.
    """

    def __init__(self, room: Callable[[Demand], Room], has_room: HasRoom) -> None:
        self._room = room
        self._has_room = has_room
        self._changed: anyio.Event | None = None
        self.waiting: set[str] = set()  # the sandbox ids of the creates waiting now

    async def changed(self) -> None:
        """Wait until a create starts or stops waiting."""
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait(
        self,
        sandbox_id: str,
        demand: Demand,
        placed: Placed,
        timeout: float | None,
        *,
        waited: float = 0.0,
        warn: bool = True,
    ) -> None:
        """Wait until `placed` is set; `CapacityError` once `timeout` seconds passed without
        it and no host has room (see the module's rules). `waited`: seconds of `timeout` the
        create already spent waiting (before a host refused it as full); without `warn`, its
        wait is logged at debug level (a create a host refused again)."""
        if placed.is_set():
            return
        turn = self._has_room(demand, sandbox_id)
        level = logging.DEBUG if turn or not warn else logging.WARNING
        if log.isEnabledFor(level):
            why = explain(self._room(demand))
            what = "its turn" if turn else "older requests" if self._has_room(demand) else "room"
            log.log(
                level,
                "sandbox %s waits for %s: it needs %s; %s",
                sandbox_id,
                what,
                needs(demand),
                why,
            )
        began = anyio.current_time() - waited
        self.waiting.add(sandbox_id)
        self._notify()
        try:
            budget = None if timeout is None else max(0.0, timeout - waited)
            while True:
                with anyio.move_on_after(budget):
                    await placed.wait()
                    return
                if not self._has_room(demand, sandbox_id):
                    break
                budget = TURN_RECHECK
        finally:
            self.waiting.discard(sandbox_id)
            self._notify()
        assert timeout is not None
        room = self._room(demand)
        why = f"found no room within {timeout:g} s: it needs {needs(demand)}; {explain(room)}"
        if self._has_room(demand):
            why = (
                f"was not placed within {timeout:g} s: a host has room for it ({needs(demand)}),"
                f" but {HELD_BACK}; {explain(room)}"
            )
        raise QueueTimedOut(
            f"sandbox {sandbox_id} {why}. (queue_timeout=None waits without a limit.)",
            sandbox_id=sandbox_id,
            queue_timeout=timeout,
            waited=round(anyio.current_time() - began, 3),
        )


__all__ = ["DISK_LIMITS", "QueueWaits", "check_admission", "check_features"]
