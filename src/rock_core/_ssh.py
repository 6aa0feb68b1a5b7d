"""Reaching an agent over SSH: one connection per host, the protocol on one forwarded channel.

How a link is made (`open_ssh_stream`):
1. Connect with asyncssh, the way ``ssh`` would: ``~/.ssh/config`` (User, Port, IdentityFile,
   ProxyJump, ...), keys from ssh-agent and ``~/.ssh``, and the host key checked against
   ``known_hosts``. Turning the check off takes an explicit ``SshOptions(verify_host_key=False)``.
2. Open a stream-local forwarding channel to the agent's unix socket: the socket named in the
   address, else the systemd service's. Nothing on the host listens on TCP.
3. No agent there: run ``rock-agent ensure`` once over an exec channel. It starts an agent in
   the background (one that outlives this link, so leases, not the link, decide when sandboxes
   go) and prints its socket; forward to that. The default command is looked for on the
   login's ``PATH``, then where docs/operations.md installs it (``/opt/rock-agent/bin``) and
   where ``pipx`` puts it (``~/.local/bin``): an SSH command's ``PATH`` rarely has either.

Every failure becomes its own error: `HostUnreachable`, `AuthenticationFailed`,
`HostKeyMismatch`, `AgentNotInstalled`, or `TransportError` for the rest. asyncssh runs on
asyncio only; under trio every call goes through `_aio.run_asyncio`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ._addresses import DEFAULT_SOCKET, HostAddress
from ._aio import on_asyncio, run_asyncio
from ._errors import (
    AgentNotInstalled,
    AuthenticationFailed,
    BadRequest,
    HostKeyMismatch,
    HostUnreachable,
    RockError,
    TransportError,
)

if TYPE_CHECKING:
    import asyncssh

log = logging.getLogger("rock_core.ssh")

ENSURE_TIMEOUT = 60.0
INSTALL_HINT = (
    "install it there in a venv of its own, from a clone or a wheel built with `python3 -m build`"
    " (`python3 -m venv /opt/rock-agent && /opt/rock-agent/bin/pip install ./rock-kit`, which"
    " is found there; see docs/operations.md), or name its command with"
    " '?agent=/path/to/rock-agent'"
)
DEFAULT_AGENT = "rock-agent"
# Where the default command is looked for after PATH, in order (a POSIX shell runs the search).
AGENT_PLACES = ("/opt/rock-agent/bin/rock-agent", "$HOME/.local/bin/rock-agent")
# Offered first unless the SSH config names its ciphers (see the module's docstring).
FAST_CIPHERS = (b"aes128-gcm@openssh.com", b"aes256-gcm@openssh.com")


@dataclass(frozen=True, kw_only=True)
class SshOptions:
    """How the core connects to ``ssh://`` hosts; the defaults follow the user's SSH setup.

    - `known_hosts`: a known_hosts file to check host keys against (default: ``~/.ssh``'s).
    - `verify_host_key`: False skips the check. Explicit, and logged, every time.
    - `config`: extra OpenSSH client config files, read before ``~/.ssh/config``.
    - `client_keys`: private key files to offer (default: ssh-agent and ``~/.ssh/id_*``).
    - `connect_timeout`: seconds to connect and authenticate.
    - `keepalive_interval`: seconds between SSH keepalives (0 turns them off).
    """

    known_hosts: str | None = None
    verify_host_key: bool = True
    config: Sequence[str] = ()
    client_keys: Sequence[str] | None = None
    connect_timeout: float = 15.0
    keepalive_interval: float = 15.0


class SshStream:
    """A forwarded channel as the protocol's `ByteStream` (on whichever backend runs us)."""

    def __init__(
        self, reader: asyncssh.SSHReader[bytes], writer: asyncssh.SSHWriter[bytes]
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._direct = on_asyncio()
        self._errors: type[Exception] = _asyncssh().Error

    @property
    def cipher(self) -> str:
        """The cipher this link encrypts with (as negotiated; for logs and tests)."""
        return str(self._writer.get_extra_info("send_cipher"))

    async def send(self, item: bytes, /) -> None:
        try:
            if self._direct:
                self._writer.write(item)
                await self._writer.drain()
            else:
                await run_asyncio(self._send, item)
        except self._errors as exc:
            raise anyio.BrokenResourceError(str(exc)) from exc

    async def _send(self, item: bytes) -> None:
        self._writer.write(item)
        await self._writer.drain()

    async def receive(self, max_bytes: int = 65536, /) -> bytes:
        try:
            if self._direct:
                data = await self._reader.read(max_bytes)
            else:
                data = await run_asyncio(self._reader.read, max_bytes)
        except self._errors as exc:
            raise anyio.BrokenResourceError(str(exc)) from exc
        if not data:
            raise anyio.EndOfStream
        return data

    async def aclose(self) -> None:
        await run_asyncio(_close_writer, self._writer)


async def _close_writer(writer: asyncssh.SSHWriter[bytes]) -> None:
    with contextlib.suppress(Exception):
        writer.close()


def _asyncssh() -> Any:
    try:
        import asyncssh
    except ImportError as exc:
        raise BadRequest(
            "ssh:// hosts need asyncssh: install the kit with its ssh extra "
            "(`pip install '.[ssh]'` from a clone of it)"
        ) from exc
    return asyncssh


@asynccontextmanager
async def open_ssh_stream(address: HostAddress, options: SshOptions) -> AsyncIterator[SshStream]:
    """Connect to `address` and yield a byte stream to its agent; close both on exit."""
    conn = await run_asyncio(_connect, address, options)
    try:
        try:
            reader, writer = await run_asyncio(_reach_agent, conn, address)
        except RockError:
            raise
        except (_asyncssh().Error, OSError) as exc:
            raise TransportError(
                f"{address.text}: lost the SSH connection while reaching the agent: {exc}",
                host=address.host,
            ) from exc
        yield SshStream(reader, writer)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await run_asyncio(_close, conn)


async def _close(conn: asyncssh.SSHClientConnection) -> None:
    conn.close()
    with contextlib.suppress(Exception):
        await conn.wait_closed()


async def _connect(address: HostAddress, options: SshOptions) -> asyncssh.SSHClientConnection:
    lib = _asyncssh()
    kwargs: dict[str, Any] = {
        "connect_timeout": options.connect_timeout,
        "keepalive_interval": options.keepalive_interval or None,
        "keepalive_count_max": 3,
    }
    if address.port is not None:
        kwargs["port"] = address.port
    if address.user is not None:
        kwargs["username"] = address.user
    if options.config:
        kwargs["config"] = list(options.config)
    if options.client_keys is not None:
        kwargs["client_keys"] = list(options.client_keys)
    if not options.verify_host_key:
        log.warning("not checking the host key of %s (verify_host_key=False)", address.host)
        kwargs["known_hosts"] = None
    elif options.known_hosts is not None:
        kwargs["known_hosts"] = options.known_hosts
    where = address.text
    try:
        # Always on asyncio (see `run_asyncio`), so its executor, not anyio's threads.
        loop = asyncio.get_running_loop()
        ciphers = await loop.run_in_executor(None, _ciphers, lib, address.host, kwargs)
        if ciphers is not None:
            kwargs["encryption_algs"] = ciphers
        conn: asyncssh.SSHClientConnection = await lib.connect(address.host, **kwargs)
    except lib.HostKeyNotVerifiable as exc:
        raise HostKeyMismatch(
            f"{where}: the host key is not trusted ({exc.reason}); it is missing from "
            "known_hosts or differs from the key recorded there. Check the host, then add its "
            "key (for example by connecting once with `ssh`)",
            host=address.host,
        ) from exc
    except lib.PermissionDenied as exc:
        raise AuthenticationFailed(
            f"{where}: authentication refused ({exc.reason}); check the user name, the keys "
            "offered (ssh-agent, IdentityFile) and the host's authorized_keys",
            host=address.host,
        ) from exc
    except (lib.ConfigParseError, ValueError) as exc:
        raise BadRequest(f"{where}: bad SSH settings: {exc}") from exc
    except lib.Error as exc:
        raise TransportError(f"{where}: SSH failed: {exc.reason}", host=address.host) from exc
    except TimeoutError as exc:
        raise HostUnreachable(
            f"{where}: no answer within {options.connect_timeout:g} s", host=address.host
        ) from exc
    except OSError as exc:
        raise HostUnreachable(
            f"{where}: cannot connect: {exc.strerror or exc}", host=address.host
        ) from exc
    return conn


def _ciphers(lib: Any, host: str, kwargs: dict[str, Any]) -> list[str] | None:
    """The ciphers to offer `host`: asyncssh's with `FAST_CIPHERS` first, or None (asyncssh
    decides) when the SSH config names its own. Reads the config and keys: run in a thread."""
    settings = lib.SSHClientConnectionOptions(host=host, **kwargs)
    if settings.config.get("Ciphers") is not None:
        return None
    rank = {name: at for at, name in enumerate(FAST_CIPHERS)}
    offered = sorted(settings.encryption_algs, key=lambda name: rank.get(name, len(rank)))
    return [name.decode("ascii") for name in offered]


async def _reach_agent(
    conn: asyncssh.SSHClientConnection, address: HostAddress
) -> tuple[asyncssh.SSHReader[bytes], asyncssh.SSHWriter[bytes]]:
    lib = _asyncssh()
    first = address.path or DEFAULT_SOCKET
    try:
        return await conn.open_unix_connection(first)
    except lib.ChannelOpenError as exc:
        if exc.code == lib.OPEN_ADMINISTRATIVELY_PROHIBITED:
            raise _forwarding_refused(address, exc) from exc
        log.debug("no agent at %s on %s (%s); running ensure", first, address.host, exc.reason)
    socket = await _ensure(conn, address)
    try:
        return await conn.open_unix_connection(socket)
    except lib.ChannelOpenError as exc:
        if exc.code == lib.OPEN_ADMINISTRATIVELY_PROHIBITED:
            raise _forwarding_refused(address, exc) from exc
        raise TransportError(
            f"{address.text}: the agent reported socket {socket} but it cannot be reached: "
            f"{exc.reason}"
        ) from exc


def _forwarding_refused(address: HostAddress, exc: Exception) -> TransportError:
    return TransportError(
        f"{address.text}: the SSH server refuses stream-local forwarding ({exc}); set "
        "'AllowStreamLocalForwarding yes' in its sshd_config"
    )


def _ensure_command(address: HostAddress) -> tuple[list[str], str]:
    """The ``ensure`` command for the host (as shown in errors) and the line the host runs."""
    command = [*shlex.split(address.agent), "ensure"]
    if address.path:
        command += ["--socket", address.path]
    if address.agent != DEFAULT_AGENT:
        return command, shlex.join(command)
    # sh -c 'SCRIPT' sh ARGS...: the first of PATH's rock-agent and AGENT_PLACES that exists.
    places = " ".join(f'"{place}"' for place in AGENT_PLACES)
    script = (
        f'for a in "$(command -v {DEFAULT_AGENT})" {places}; do'
        ' if [ -n "$a" ] && [ -x "$a" ]; then exec "$a" "$@"; fi; done;'
        f' echo "{DEFAULT_AGENT}: command not found" >&2; exit 127'
    )
    return command, shlex.join(["sh", "-c", script, "sh", *command[1:]])


async def _ensure(conn: asyncssh.SSHClientConnection, address: HostAddress) -> str:
    command, line = _ensure_command(address)
    try:
        result = await conn.run(line, check=False, timeout=ENSURE_TIMEOUT)
    except TimeoutError as exc:
        raise TransportError(
            f"{address.text}: `{shlex.join(command)}` did not finish within {ENSURE_TIMEOUT:g} s",
            host=address.host,
        ) from exc
    stderr = str(result.stderr or "").strip()
    if result.exit_status == 127:
        raise AgentNotInstalled(
            f"{address.text}: no `{address.agent}` on the host ({stderr or 'command not found'});"
            f" {INSTALL_HINT}",
            host=address.host,
        )
    if result.exit_status != 0:
        raise TransportError(
            f"{address.text}: `{shlex.join(command)}` failed with status {result.exit_status}:"
            f" {stderr[-2000:] or '(no output)'}",
            host=address.host,
        )
    lines = str(result.stdout or "").strip().splitlines()
    try:
        socket = json.loads(lines[-1])["socket"]
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        raise TransportError(
            f"{address.text}: `{shlex.join(command)}` printed no socket (is `{address.agent}` "
            f"an old or foreign program?): {result.stdout!r}"
        ) from exc
    if not isinstance(socket, str) or not socket.startswith("/"):
        raise TransportError(f"{address.text}: the agent reported a bad socket {socket!r}")
    return socket


__all__ = ["INSTALL_HINT", "SshOptions", "SshStream", "open_ssh_stream"]
