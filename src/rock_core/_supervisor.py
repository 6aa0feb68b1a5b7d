"""Keeping one host's link alive: connect, heartbeat, reconnect with backoff.

Rules:
- The supervisor knows a `Connector`, a handshake and two callbacks; nothing of records,
  hosts or the scheduler. `up(conn)` is called on every link that comes up (the cluster
  registers the host and reconciles); `down(error)` when it goes (or a reconnect fails).
- The first connection is the caller's: its failure is raised (`task_status` is reported only
  once `up` returned). Later failures are only reported to `down`, and retried.
- A link is pinged `heartbeat` seconds after the previous answer; an answer slower than
  `heartbeat_timeout` breaks it. Each ping also renews the owner's lease on the agent.
- Reconnects back off: `RECONNECT_BASE` seconds doubling up to `RECONNECT_MAX`, each with
  jitter of +-50 % so that a program's links do not all knock at once.
- A connector is anyone's code: whatever else than our errors it raises while connecting
  (`OSError`, anyio's stream errors) is a `TransportError` naming the host, so a broken
  connector is a link failure like any other, never a crash of the cluster.
- Time is anyio's only (virtual time in tests).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import anyio.abc

from ._channel import ByteStream
from ._connection import AgentConnection
from ._errors import RockError, TransportError
from ._hosts import Connector
from ._protocol import Ping, Pong

RECONNECT_BASE = 0.5  # seconds before the first reconnect; doubles up to RECONNECT_MAX
RECONNECT_MAX = 15.0

Handshake = Callable[[Connector, ByteStream], AbstractAsyncContextManager[AgentConnection]]


def backoff(failures: int, jitter: float = 1.0) -> float:
    """Seconds to wait before reconnect number `failures` (>= 1); `jitter` in [0.5, 1.5]."""
    return min(RECONNECT_MAX, RECONNECT_BASE * 2.0 ** min(failures - 1, 10)) * jitter


async def supervise(
    connector: Connector,
    *,
    handshake: Handshake,
    up: Callable[[AgentConnection], Awaitable[None]],
    down: Callable[[str], None],
    heartbeat: float,
    heartbeat_timeout: float,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Keep `connector`'s host connected until cancelled; see the module's rules."""
    started = False
    failures = 0
    while True:
        error = ""
        try:
            async with _connect(connector) as stream, handshake(connector, stream) as conn:
                await up(conn)
                if not started:
                    task_status.started()
                    started = True
                failures = 0
                error = await _heartbeat(conn, heartbeat, heartbeat_timeout)
        except RockError as exc:
            if not started:
                raise  # the first connection: the caller hears of it
            error = str(exc)
        down(error)
        failures += 1
        await anyio.sleep(backoff(failures, random.uniform(0.5, 1.5)))


@asynccontextmanager
async def _connect(connector: Connector) -> AsyncIterator[ByteStream]:
    """`connector.connect()`, with its foreign errors on the way in and out as
    `TransportError` (a cancellation stays one)."""
    try:
        opening = connector.connect()
        stream = await opening.__aenter__()
    except RockError:
        raise
    except Exception as exc:  # the connector is the caller's code: anything may come out
        raise TransportError(f"connecting to {connector.name}: {exc!r}") from exc
    try:
        yield stream
    except BaseException as exc:
        try:
            suppressed = await opening.__aexit__(type(exc), exc, exc.__traceback__)
        except RockError:
            raise
        except Exception as closing:
            if not isinstance(exc, Exception):
                raise exc from closing  # a cancellation stays one
            raise TransportError(f"closing the link to {connector.name}: {closing!r}") from exc
        if not suppressed:
            raise
    else:
        try:
            await opening.__aexit__(None, None, None)
        except RockError:
            raise
        except Exception as closing:
            raise TransportError(f"closing the link to {connector.name}: {closing!r}") from closing


async def _heartbeat(conn: AgentConnection, every: float, timeout: float) -> str:
    """Ping until the link fails; return why."""
    while True:
        with anyio.move_on_after(every):
            await conn.wait_closed()
            return "the agent closed the link"
        try:
            with anyio.fail_after(timeout):
                await conn.call(Ping(), Pong)
        except TimeoutError:
            return f"no heartbeat answer within {timeout:g} s"
        except TransportError as exc:
            return str(exc)


__all__ = ["RECONNECT_BASE", "RECONNECT_MAX", "Handshake", "backoff", "supervise"]
