"""Host ports reached from inside a sandbox, caller side: a listener in the sandbox whose
connections lead back to a port of the caller (the reverse of `_ports`).

`open_host_port` sends one long-lived `ListenPort` request: the agent listens inside the
sandbox's network namespace (so it works with the sandbox's network off) and announces each
connection accepted there (`Accepted`). For each one, the caller connects to its own
`local_host:local_port` and claims the connection with a `ClaimConnection` request, whose
bytes travel both ways as credit-controlled `StreamData`, like a forward's (`_ports.exchange`).
Everything rides the agent link the cluster already has (over SSH, its SSH connection).

Rules:
- The value given to the block is the URL programs inside the sandbox use
  (``http://127.0.0.1:PORT``), a `HostPort` that also counts what went through it.
- A connection whose local port refuses (or fails) is reset inside the sandbox (the claim says
  ``reject``), and the error is kept in `HostPort.errors` and given to `on_error`; so is a
  connection that fails mid-way. Connections never end the block.
- A broken link does not end it either: the listen is made again, on the same port, on the
  link the resolver returns once the cluster has reconnected (the first failure of each outage
  is kept in `errors`). Connections made inside while the link is down are refused or
  reset there.
- The block ends with an error when the listen cannot go on: the sandbox stopped or was
  removed (`SandboxFailed`), is not there (`SandboxNotFound`), or its port was taken
  (`AlreadyExists`). Leaving the block closes the listener and every connection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ._connection import AgentConnection, raise_for_reply, unwrap_single_errors
from ._errors import BadRequest, NotFound, RockError, TimedOut, TransportError
from ._ports import LinkSource, exchange, report, reset
from ._protocol import Accepted, ClaimConnection, Done, ForwardReply, Listening, ListenPort, Reply
from ._refused import connection_refused

LOCAL_CONNECT_TIMEOUT = 10.0  # seconds to connect to the caller's own port
RELISTEN_PAUSE = 0.2  # seconds before listening again after the link broke; doubles per try
RELISTEN_PAUSE_MAX = 2.0


class HostPort(str):
    """The URL inside a sandbox that leads to a port of the caller, with what went through it."""

    sandbox_id: str
    address: str
    port: int
    local_host: str
    local_port: int
    connections: int
    active: int
    bytes_in: int
    bytes_out: int
    errors: list[RockError]

    def __new__(
        cls, sandbox_id: str, address: str, port: int, local_host: str, local_port: int
    ) -> HostPort:
        host = f"[{address}]" if ":" in address else address
        exposed = super().__new__(cls, f"http://{host}:{port}")
        exposed.sandbox_id = sandbox_id
        exposed.address = address  # where it listens, inside the sandbox
        exposed.port = port  # the port it listens on, inside the sandbox
        exposed.local_host = local_host
        exposed.local_port = local_port
        exposed.connections = 0  # accepted so far
        exposed.active = 0  # carried now
        exposed.bytes_in = 0  # carried into the sandbox
        exposed.bytes_out = 0  # carried out of it
        exposed.errors = []  # one per connection that failed, and per link outage
        return exposed

    @property
    def url(self) -> str:
        """``http://address:port``, as a plain string."""
        return str.__str__(self)

    def __repr__(self) -> str:
        return (
            f"<HostPort {self.url} in {self.sandbox_id} -> {self.local_host}:{self.local_port} "
            f"connections={self.connections} errors={len(self.errors)}>"
        )


def _check_port(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        raise BadRequest(f"{name} must be an integer between {low} and 65535, got {value!r}")
    return value


@asynccontextmanager
async def open_host_port(
    link: LinkSource,
    sandbox_id: str,
    local_port: int,
    *,
    local_host: str = "127.0.0.1",
    port: int = 0,
    address: str = "127.0.0.1",
    on_error: Callable[[RockError], object] | None = None,
) -> AsyncIterator[HostPort]:
    """Listen on `address:port` inside the sandbox (0: any free port) and carry each
    connection made there to `local_host:local_port` of the caller, while the block runs.

    `link` is the agent connection, or better a resolver returning the live one (raising
    `HostUnavailable` while the link is down), so the listen follows the cluster's reconnects.
    """
    _check_port(local_port, "local_port", 1)
    _check_port(port, "port", 0)
    if not isinstance(local_host, str) or not local_host:
        raise BadRequest(f"local_host must be a host name or address, got {local_host!r}")
    try:
        ipaddress.ip_address(address)
    except ValueError as exc:
        raise BadRequest(f"address {address!r} is not an IP address") from exc
    resolve: Callable[[], AgentConnection] = (
        (lambda: link) if isinstance(link, AgentConnection) else link
    )
    resolve().require("host-ports", "reach a port of the caller from a sandbox")
    target = _Target(sandbox_id, address, local_host, local_port, on_error)
    with unwrap_single_errors():
        async with anyio.create_task_group() as tg:
            exposed: HostPort = await tg.start(_keep_listening, resolve, target, port, tg)
            try:
                yield exposed
            finally:
                tg.cancel_scope.cancel()


class _Target:
    """What a listen needs to carry its connections (fixed for the block)."""

    def __init__(
        self,
        sandbox_id: str,
        address: str,
        local_host: str,
        local_port: int,
        on_error: Callable[[RockError], object] | None,
    ) -> None:
        self.sandbox_id = sandbox_id
        self.address = address
        self.local_host = local_host
        self.local_port = local_port
        self.on_error = on_error
        self.exposed: HostPort | None = None

    def failed(self, error: RockError) -> None:
        assert self.exposed is not None
        self.exposed.errors.append(error)
        report(self.on_error, error)


async def _keep_listening(
    resolve: Callable[[], AgentConnection],
    target: _Target,
    port: int,
    tg: TaskGroup,
    *,
    task_status: TaskStatus[HostPort],
) -> None:
    """Listen, and listen again on the same port whenever the link breaks (until cancelled)."""
    pause, outage = RELISTEN_PAUSE, False
    while True:
        try:
            conn = resolve()
            request = ListenPort(sandbox_id=target.sandbox_id, port=port, address=target.address)
            async with conn.open_request(request) as answers:
                async for message in answers:
                    if isinstance(message, Listening):
                        if target.exposed is None:
                            target.exposed = HostPort(
                                target.sandbox_id,
                                target.address,
                                message.port,
                                target.local_host,
                                target.local_port,
                            )
                            task_status.started(target.exposed)
                        port, pause, outage = message.port, RELISTEN_PAUSE, False
                    elif isinstance(message, Accepted):
                        tg.start_soon(_carry, conn, request.id, message.connection, target)
                    elif isinstance(message, Reply):
                        raise_for_reply(message, Done, request)
                        return  # an agent that ends a listen without an error: nothing to do
        except TransportError as exc:
            if target.exposed is None:
                raise  # never listened: the caller learns it at once
            if not outage:
                target.failed(exc)
            outage = True
        await anyio.sleep(pause)
        pause = min(pause * 2, RELISTEN_PAUSE_MAX)


async def _carry(conn: AgentConnection, listen_id: int, number: int, target: _Target) -> None:
    """Carry one connection accepted inside; a failure resets it and is recorded, never raised."""
    exposed = target.exposed
    assert exposed is not None
    exposed.connections += 1
    exposed.active += 1
    claim = ClaimConnection(sandbox_id=target.sandbox_id, listen=listen_id, connection=number)
    failure: RockError | None = None
    try:
        try:
            local = await _connect_local(target)
        except RockError as exc:
            target.failed(exc)  # reported before the reset inside, which the program sees
            claim.reject = True
            try:
                await conn.call(claim, ForwardReply)
            except RockError:
                pass  # the connection is reset inside however the claim fails
            return
        async with local:
            try:
                await exchange(conn, claim, exposed, local)
            except RockError as exc:
                failure = exc
                reset(local)
    finally:
        exposed.active -= 1
    if failure is not None:
        target.failed(failure)


async def _connect_local(target: _Target) -> anyio.abc.SocketStream:
    where = f"{target.local_host}:{target.local_port}"
    try:
        with anyio.fail_after(LOCAL_CONNECT_TIMEOUT):
            return await anyio.connect_tcp(target.local_host, target.local_port)
    except TimeoutError as exc:
        raise TimedOut(
            f"connecting to {where} for sandbox {target.sandbox_id} took over "
            f"{LOCAL_CONNECT_TIMEOUT:g} s"
        ) from exc
    except OSError as exc:
        if connection_refused(exc):
            raise NotFound(
                f"nothing listens on {where} (connection refused), so a connection from "
                f"sandbox {target.sandbox_id} was reset"
            ) from exc
        raise TransportError(
            f"cannot connect to {where} for sandbox {target.sandbox_id}: {exc.strerror or exc}"
        ) from exc


__all__ = ["HostPort", "open_host_port"]
