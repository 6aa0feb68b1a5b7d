"""The caller's end of the in-sandbox environment servers (`_remote_server`), shared by envs.

Rules:
- An `EnvServer` is one server process in a session of its own in a sandbox, holding the
  environments of one or more `RemoteEnv`s, each in a slot. It makes one exchange at a time
  (a lock): a request line out, then the reply lines up to the one carrying the request's
  number; earlier replies (of a call whose caller gave up) are skipped.
- Calls travel already encoded (each env encodes and checks its own, see `RemoteEnv`); a
  batch joins them into one line, or several when they would pass `MAX_LINE_BYTES`.
- A server whose process ends is dead: that exchange and every later one raise
  `SandboxFailed` with the last of its output, and no env joins it any more.
- `EnvServers` hands servers out. Envs attached to one `EnvServers` that run in the same
  sandbox with the same code bundle share a server until it holds `per_server` of them; the
  next one starts a new server. Envs waiting for a server that another env is starting use
  it once it runs; if that start fails they raise its error (or, when it was only cancelled,
  try again). The last env to leave a server closes its session, which ends the process.
- A start that fails or is cancelled closes the session it opened before it returns: that
  cleanup is shielded and bounded by `CLEANUP_TIMEOUT`; its own failure is only logged.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

import anyio

from rock_core import BadRequest, RockError, SandboxFailed
from rock_core.protocol import error_from_code

from .._interactive import InteractiveProcess
from .._sandbox import Sandbox
from ._bundle import Bundle
from ._remote_server import REPLY_PATTERN, REPLY_PREFIX

__all__ = ["CLEANUP_TIMEOUT", "MAX_LINE_BYTES", "EnvServer", "EnvServers", "unwrap"]

log = logging.getLogger("rock_sdk.envs")

#: Seconds a failed or cancelled start may spend closing what it opened.
CLEANUP_TIMEOUT = 30.0

#: Longest request line (well under the protocol's 16 MiB frame).
MAX_LINE_BYTES = 8 << 20

_BOOT = (
    'python3 -u -c \'import sys; sys.path.insert(0, "{path}"); '
    "from rock_sdk.envs._remote_server import main; main()'"
)


def unwrap(outcome: dict[str, Any]) -> Any:
    """The result an outcome (a reply, or one call's part of a batch reply) carries, or its error
    as our exception, with the remote traceback in ``details["remote_traceback"]``."""
    if outcome.get("ok"):
        return outcome.get("result")
    raise error_from_code(
        str(outcome.get("code")),
        str(outcome.get("message")),
        {"remote_traceback": outcome.get("traceback", "")},
    )


def _parse(line: str) -> dict[str, Any] | None:
    """A reply line's object, or None when an environment printed something that looks like one."""
    try:
        reply = json.loads(line[len(REPLY_PREFIX) :])
    except ValueError:
        log.debug("not a reply, skipped: %r", line[:200])
        return None
    return reply if isinstance(reply, dict) else None


class EnvServer:
    """One in-sandbox environment server and the slots of the envs it holds."""

    def __init__(self, sandbox: Sandbox, bundle: Bundle) -> None:
        self.sandbox = sandbox
        self.bundle = bundle
        #: The session the server runs in (its own).
        self.session = f"env-{secrets.token_hex(4)}"
        #: The slots of the envs attached to it.
        self.slots: set[int] = set()
        #: Why the server is gone (its last output), once it is; None while it serves.
        self.failure: str | None = None
        self._process: InteractiveProcess | None = None
        self._open = False
        self._started = anyio.Event()
        self._start_error: RockError | None = None
        self._next_slot = 0
        self._request = 0
        self._lock = anyio.Lock()

    @property
    def running(self) -> bool:
        """Whether the server process runs (started, not ended, not closed)."""
        return self._process is not None

    def take_slot(self) -> int:
        """A slot number for a new env (never reused)."""
        slot = self._next_slot
        self._next_slot += 1
        self.slots.add(slot)
        return slot

    async def start(self) -> None:
        """Open the session, put the bundle in place and start the server process."""
        sandbox, bundle = self.sandbox, self.bundle
        try:
            await sandbox.create_session(self.session)
            self._open = True
            present = await sandbox.arun(f"test -s {bundle.path}", self.session, timeout=30)
            if not present.ok:
                # Written aside then renamed: servers sharing the sandbox never see half a file.
                partial = f"{bundle.path}.{self.session}"
                await sandbox.write_file(partial, bundle.data)
                await sandbox.arun(
                    f"mv -f {partial} {bundle.path}", self.session, timeout=30, check=True
                )
            self._process = await sandbox.start_interactive(
                _BOOT.format(path=bundle.path), self.session
            )
        except BaseException as exc:
            self.failure = f"its start failed: {exc}"
            if isinstance(exc, RockError):
                self._start_error = exc
            with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True):
                try:
                    await self.aclose()
                except RockError as cleanup:
                    log.warning("closing session %s of a failed start: %s", self.session, cleanup)
            raise
        finally:
            self._started.set()

    async def wait_started(self) -> bool:
        """Wait for another caller's `start`: True if the server runs, False if that start was
        cancelled (try another); the start's error (of the same class) if it failed."""
        await self._started.wait()
        error = self._start_error
        if error is not None:
            raise type(error)(error.message, **error.details)
        return self._process is not None or self.failure is None

    async def call(self, request: str, timeout: float) -> dict[str, Any]:
        """Send one encoded call (a JSON object, no id) and return its reply."""
        return await self._exchange(request, timeout)

    async def batch(self, calls: list[str], timeout: float) -> list[dict[str, Any]]:
        """Send encoded calls as batches and return one outcome per call, in order."""
        outcomes: list[dict[str, Any]] = []
        first = 0
        while first < len(calls):
            size, last = 0, first
            while last < len(calls) and (last == first or size + len(calls[last]) < MAX_LINE_BYTES):
                size += len(calls[last]) + 1
                last += 1
            line = '{"op": "batch", "calls": [' + ",".join(calls[first:last]) + "]}"
            reply = await self._exchange(line, timeout)
            results = unwrap(reply)
            if (
                not isinstance(results, list)
                or len(results) != last - first
                or not all(isinstance(result, dict) for result in results)
            ):
                raise RockError(f"the environment server answered a batch with {reply!r:.2000}")
            outcomes.extend(results)
            first = last
        return outcomes

    async def aclose(self) -> None:
        """End the session and so the server process (its envs are gone with it)."""
        if self.failure is None:
            self.failure = "it was closed"
        self._process = None
        if self._open:
            self._open = False
            await self.sandbox.close_session(self.session)

    async def _exchange(self, request: str, timeout: float) -> dict[str, Any]:
        async with self._lock:
            process = self._process
            if process is None:
                raise self._exited()
            self._request += 1
            number = self._request
            await process.sendline(f'{{"id": {number}, {request[1:]}')
            parts: list[Any] = []
            while True:
                found = await process.expect(REPLY_PATTERN, timeout=timeout)
                if found.before.strip():
                    log.debug("env server %s printed: %s", self.session, found.before.rstrip())
                if found.index < 0:
                    self._process = None
                    self.failure = found.before.strip()[-2000:] or "no output"
                    raise self._exited()
                reply = _parse(found.match)
                if reply is None or reply.get("id") not in (number, None):
                    continue  # not a reply, or another call's (None: it failed before reading)
                if reply.get("more") and isinstance(reply.get("result"), list):
                    parts.extend(reply["result"])
                    continue
                if parts:
                    if not isinstance(reply.get("result"), list):  # e.g. it failed midway
                        raise RockError(
                            f"the environment server ended a reply in parts with {reply!r:.2000}"
                        )
                    reply["result"] = parts + reply["result"]
                return reply

    def _exited(self) -> SandboxFailed:
        return SandboxFailed(
            f"the environment server in sandbox {self.sandbox.sandbox_id} exited: {self.failure}"
        )


class EnvServers:
    """Where envs get their server: shared per sandbox and code bundle, `per_server` at most."""

    def __init__(self, per_server: int = 1) -> None:
        if type(per_server) is not int or per_server < 1:
            raise BadRequest(f"envs per server must be a whole number of at least 1, got "
                             f"{per_server!r}")  # fmt: skip
        self.per_server = per_server
        self._servers: dict[tuple[str, str], list[EnvServer]] = {}

    async def attach(self, sandbox: Sandbox, bundle: Bundle) -> tuple[EnvServer, int]:
        """A running server for an env of `bundle` in `sandbox`, and the env's slot on it."""
        key = (sandbox.sandbox_id, bundle.digest)
        while True:
            servers = self._servers.setdefault(key, [])
            server = next(
                (s for s in servers if s.failure is None and len(s.slots) < self.per_server),
                None,
            )
            if server is None:
                server = EnvServer(sandbox, bundle)
                slot = server.take_slot()
                servers.append(server)
                try:
                    await server.start()
                except BaseException:
                    self._forget(key, server)
                    raise
                return server, slot
            slot = server.take_slot()
            try:
                if await server.wait_started():
                    return server, slot
            except BaseException:
                server.slots.discard(slot)
                raise
            server.slots.discard(slot)  # its start was cancelled: start another

    async def detach(self, server: EnvServer, slot: int, *, farewell: str | None) -> None:
        """Take `slot` off `server`; the last env to leave ends it.

        `farewell` is the encoded close call to send when other envs stay on the server (so
        this env's ``close`` runs there), or None to send nothing.
        """
        server.slots.discard(slot)
        if server.slots:
            if farewell is not None and server.running:
                try:
                    unwrap(await server.call(farewell, CLEANUP_TIMEOUT))
                except RockError as exc:
                    log.warning("closing an environment in server %s: %s", server.session, exc)
            return
        self._forget((server.sandbox.sandbox_id, server.bundle.digest), server)
        await server.aclose()

    def _forget(self, key: tuple[str, str], server: EnvServer) -> None:
        servers = self._servers.get(key, [])
        if server in servers:
            servers.remove(server)
        if not servers:
            self._servers.pop(key, None)
