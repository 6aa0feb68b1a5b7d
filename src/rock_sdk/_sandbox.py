"""`Sandbox`: one isolated container with named shell sessions, commands and files.

With no cluster given, a `Sandbox` borrows its event loop's shared embedded core with one local
agent (`_embedded`): any task may start, use or delete it. With a cluster, it is placed by that
cluster's scheduler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from os import PathLike
from types import TracebackType
from typing import Literal, Protocol, TypeVar, runtime_checkable

import anyio

from rock_core import (
    AlreadyExists,
    BadRequest,
    Cluster,
    CommandFailed,
    PortForward,
    RockError,
    SandboxNotFound,
    SandboxRecord,
    SandboxState,
    SessionNotFound,
    open_port_forward,
)
from rock_core.protocol import (
    MAX_DATA,
    CloseSession,
    CommandReply,
    CommitSandbox,
    CreateSession,
    DeadlinesReply,
    Done,
    ExecReply,
    Execute,
    FileReply,
    FileStat,
    ImageInfo,
    ImageReply,
    Keepalive,
    Output,
    ReadFile,
    ReadStats,
    Reply,
    Request,
    RunCommand,
    SandboxDeadlines,
    SandboxStats,
    SetTimeouts,
    StatsReply,
    WriteFile,
    check_held_output,
    raise_for_reply,
)
from rock_core.protocol import CommandResult as WireCommandResult

from . import _arguments as args
from . import _transfer
from ._config import SandboxConfig
from ._embedded import SharedCluster, borrow
from ._interactive import InteractiveProcess
from ._results import CommandResult, ExecResult, why_failed
from ._status import SandboxStatus

R = TypeVar("R", bound=Reply)

DEFAULT_SESSION = "default"
DEFAULT_OUTPUT_LIMIT = 1 << 20


@runtime_checkable
class _HasCore(Protocol):
    """An SDK cluster: anything that wraps a core `Cluster` as `core`."""

    @property
    def core(self) -> Cluster: ...


class Sandbox:
    """A sandbox; use ``async with Sandbox(config) as sb`` or `start()` / `stop()`."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        cluster: Cluster | _HasCore | None = None,
        sandbox_id: str | None = None,
    ) -> None:
        if config is not None and not isinstance(config, SandboxConfig):
            raise BadRequest(f"config must be a SandboxConfig or None, got {config!r}")
        if cluster is not None and not isinstance(cluster, Cluster | _HasCore):
            raise BadRequest(f"cluster must be a cluster (open_cluster) or None, got {cluster!r}")
        self.config = config or SandboxConfig()
        self._spec = self.config.to_spec()
        self._cluster = cluster.core if isinstance(cluster, _HasCore) else cluster
        self._requested_id = sandbox_id or self.config.sandbox_id
        self._record: SandboxRecord | None = None
        self._shared: SharedCluster | None = None  # the borrowed embedded core, if any
        self._sessions: set[str] = set()

    @classmethod
    def attach(cls, cluster: Cluster | _HasCore, sandbox_id: str) -> Sandbox:
        """A `Sandbox` for a sandbox `cluster` already holds (for example one it adopted)."""
        if not isinstance(cluster, Cluster | _HasCore):
            raise BadRequest(f"cluster must be a cluster (open_cluster), got {cluster!r}")
        cluster = cluster.core if isinstance(cluster, _HasCore) else cluster
        record = cluster.record(sandbox_id)
        sandbox = cls(SandboxConfig(image=record.spec.image), cluster=cluster)
        sandbox._spec = record.spec
        sandbox._record = record
        return sandbox

    # ------------------------------------------------------------------ lifecycle

    @property
    def sandbox_id(self) -> str:
        """The sandbox's id (known once started)."""
        if self._record is None:
            if self._requested_id:
                return self._requested_id
            raise BadRequest("the sandbox has not been started")
        return self._record.sandbox_id

    @property
    def state(self) -> SandboxState:
        """The core's current view of the sandbox's state (no call to the agent)."""
        if self._record is None:
            return SandboxState.PENDING
        return self._record.state

    @property
    def cluster(self) -> Cluster:
        """The cluster that placed this sandbox."""
        if self._cluster is None:
            raise BadRequest("the sandbox has not been started")
        return self._cluster

    async def start(self) -> Sandbox:
        """Create and start the sandbox (with an embedded local core if no cluster was given)."""
        if self._record is not None and self._record.state is SandboxState.RUNNING:
            return self
        if self._record is not None and self._record.state is SandboxState.STOPPED:
            await self.cluster.start_sandbox(self._record.sandbox_id)
            self._sessions.clear()
            return self
        if self._cluster is None:
            self._shared = await borrow()
            self._cluster = self._shared.cluster
        assert self._cluster is not None
        try:
            self._record = await self._cluster.create_sandbox(
                self._spec,
                sandbox_id=self._requested_id,
                queue_timeout=self.config.queue_timeout(),
            )
        except BaseException:
            await self._give_back()
            raise
        return self

    async def stop(self) -> None:
        """Stop the sandbox; its container and files are kept, so `start()` brings it back."""
        await self.cluster.stop_sandbox(self.sandbox_id)
        self._sessions.clear()

    async def restart(self) -> None:
        """Stop and start again: files are kept, sessions are new."""
        await self.stop()
        await self.start()

    async def delete(self) -> None:
        """Remove the sandbox and everything in it; a stand-alone one gives back the shared
        embedded core (closed with its last user). Any task may call it."""
        if self._record is None:
            return
        if self._record.state is SandboxState.DELETED:
            await self._give_back()  # the cluster may have forgotten it by now
            return
        try:
            # Shielded: a cancelled caller must not leave the container behind.
            with anyio.CancelScope(shield=True):
                await self.cluster.delete_sandbox(self.sandbox_id)
        finally:
            self._sessions.clear()
            await self._give_back()

    async def aclose(self) -> None:
        """Delete the sandbox; the same as `delete()`."""
        await self.delete()

    async def _give_back(self) -> None:
        if self._shared is not None:
            shared, self._shared = self._shared, None
            self._cluster = None
            await shared.give_back()

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def status(self) -> SandboxStatus:
        """State, host, container details and the full state history."""
        record = self._require_record()
        info = None
        if record.state not in (SandboxState.DELETED, SandboxState.PENDING):
            info = await self.cluster.inspect(record.sandbox_id)
        return SandboxStatus(record, info)

    async def keepalive(self) -> SandboxDeadlines:
        """Count as a use now: the idle timeout runs again from this moment."""
        reply = await self._timeouts_call(Keepalive(id=self._next_id(), sandbox_id=self.sandbox_id))
        return reply.deadlines

    async def set_timeouts(
        self,
        *,
        idle_timeout: float | None = None,
        lifetime: float | None = None,
        on_expire: Literal["stop", "delete"] | None = None,
        auto_delete_after: float | None = None,
    ) -> SandboxDeadlines:
        """Change the sandbox's timeouts while it exists; returns its deadlines now.

        None leaves a value as it is; ``math.inf`` removes that limit. A deadline moved into
        the past acts within about a second.
        """
        reply = await self._timeouts_call(
            SetTimeouts(
                id=self._next_id(),
                sandbox_id=self.sandbox_id,
                idle_timeout=idle_timeout,
                lifetime=lifetime,
                on_expire="" if on_expire is None else on_expire,
                auto_delete_after=auto_delete_after,
            )
        )
        return reply.deadlines

    async def _timeouts_call(self, request: Request) -> DeadlinesReply:
        record = self._require_record()
        self.cluster.connection(self.sandbox_id).require("timeouts", "change timeouts")
        reply = await self._call(request, DeadlinesReply)
        if record.info is not None:
            record.info.deadlines = reply.deadlines
        return reply

    def _require_record(self) -> SandboxRecord:
        if self._record is None:
            raise BadRequest("the sandbox has not been started")
        return self._record

    async def _call(self, request: Request, expect: type[R]) -> R:
        self._require_record()
        return await self.cluster.call(self.sandbox_id, request, expect)

    def _next_id(self) -> int:
        return self.cluster.connection(self.sandbox_id).next_id()

    # ------------------------------------------------------------------ sessions

    async def create_session(
        self, session: str = DEFAULT_SESSION, *, env: dict[str, str] | None = None, cwd: str = ""
    ) -> str:
        """Start a named, stateful shell; cwd, variables and functions persist in it."""
        await self._call(
            CreateSession(
                id=self._next_id(),
                sandbox_id=self.sandbox_id,
                session=session,
                env=args.env(env),
                cwd=cwd,
            ),
            Done,
        )
        self._sessions.add(session)
        return session

    async def close_session(self, session: str) -> None:
        """End a session's shell and whatever it still runs."""
        self._sessions.discard(session)
        await self._call(
            CloseSession(id=self._next_id(), sandbox_id=self.sandbox_id, session=session), Done
        )

    async def arun(
        self,
        cmd: str,
        session: str | None = None,
        *,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        check: bool = False,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        on_output: Callable[[bytes], Awaitable[None] | None] | None = None,
    ) -> CommandResult:
        """Run `cmd` in a session (the default one if none is named) and return its result.

        `timeout` bounds the whole command and `idle_timeout` the time without output; either
        interrupts the command (the session survives) and sets `timed_out`/`idle_timed_out`.
        With `check`, a non-zero exit raises `CommandFailed` carrying the result. Output comes
        back in the result, so without `on_output` `output_limit` is at most 15 MiB (all of the
        output is in `output_path`); with `on_output` it streams and may be larger.
        """
        args.callback(on_output, "on_output", "each chunk of output (bytes)")
        args.flag(check, "check")
        check_held_output(output_limit, streamed=on_output is not None)
        name = await self._session_for(session)
        try:
            wire, streamed = await self._run(
                cmd, name, timeout, idle_timeout, output_limit, on_output
            )
        except SessionNotFound:
            if session is not None:
                raise
            # The default session is gone (its agent restarted): the command never ran, so
            # open the session again and run it there.
            self._sessions.discard(name)
            name = await self._session_for(None)
            wire, streamed = await self._run(
                cmd, name, timeout, idle_timeout, output_limit, on_output
            )
        result = CommandResult.from_wire(wire, bytes(streamed) if on_output else None)
        if result.session_closed:
            self._sessions.discard(name)
            if self.state in (SandboxState.DELETING, SandboxState.DELETED):
                raise SandboxNotFound(
                    f"sandbox {self.sandbox_id} was deleted while command {cmd!r} ran",
                    sandbox_id=self.sandbox_id,
                )
        if check and not result.ok:
            why = why_failed(result, self._spec.memory)
            raise CommandFailed(f"command {cmd!r} {why}", result=result, exit_code=result.exit_code)
        return result

    async def _run(
        self,
        cmd: str,
        name: str,
        timeout: float | None,
        idle_timeout: float | None,
        output_limit: int,
        on_output: Callable[[bytes], Awaitable[None] | None] | None,
    ) -> tuple[WireCommandResult, bytearray]:
        request = RunCommand(
            id=self._next_id(),
            sandbox_id=self.sandbox_id,
            session=name,
            command=cmd,
            timeout=timeout,
            idle_timeout=idle_timeout,
            output_limit=output_limit,
            stream=on_output is not None,
        )
        conn = self.cluster.connection(self.sandbox_id)
        streamed = bytearray()
        wire = None
        async with conn.open_request(request) as answers:
            async for message in answers:
                if isinstance(message, Output):
                    streamed += message.data
                    if on_output is not None:
                        maybe = on_output(message.data)
                        if maybe is not None:
                            await maybe
                elif isinstance(message, Reply):
                    wire = raise_for_reply(message, CommandReply, request).result
        assert wire is not None
        return wire, streamed

    async def _session_for(self, session: str | None) -> str:
        name = DEFAULT_SESSION if session is None else session
        if session is None and name not in self._sessions:
            try:
                await self.create_session(name)
            except AlreadyExists:
                self._sessions.add(name)  # an adopted sandbox whose agent kept it
        return name

    async def start_interactive(
        self, cmd: str, session: str | None = None, *, output_limit: int = DEFAULT_OUTPUT_LIMIT
    ) -> InteractiveProcess:
        """Start a program that reads input (a REPL, an installer's prompts) in a session.

        Drive it with `expect`, `send`/`sendline`, `interrupt` and `wait`.
        """
        check_held_output(output_limit, streamed=False)  # `wait` returns it in one reply
        name = await self._session_for(session)
        await self._call(
            RunCommand(
                id=self._next_id(),
                sandbox_id=self.sandbox_id,
                session=name,
                command=cmd,
                interactive=True,
                output_limit=output_limit,
            ),
            Done,
        )
        return InteractiveProcess(self.cluster, self.sandbox_id, name)

    async def execute(
        self,
        argv: Sequence[str],
        *,
        cwd: str = "",
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: bytes | str = b"",
        check: bool = False,
    ) -> ExecResult:
        """Run a one-off command (no shell state) with stdout and stderr apart."""
        if isinstance(argv, str):
            raise BadRequest("execute takes an argv list; use arun() for a shell command line")
        argv = args.strings(argv, "argv", "['ls', '-l']")
        args.flag(check, "check")
        result = ExecResult.from_wire(
            (
                await self._call(
                    Execute(
                        id=self._next_id(),
                        sandbox_id=self.sandbox_id,
                        argv=list(argv),
                        cwd=cwd,
                        env=args.env(env),
                        timeout=timeout,
                        stdin=args.data(stdin, "stdin"),
                    ),
                    ExecReply,
                )
            ).result
        )
        if check and not result.ok:
            why = why_failed(result, self._spec.memory)
            raise CommandFailed(f"{argv[0]!r} {why}", result=result, exit_code=result.exit_code)
        return result

    # ------------------------------------------------------------------ files

    async def read_file(self, path: str) -> bytes:
        """The exact bytes of a file of at most 15 MiB (larger ones: `download`); a missing
        file raises `FileNotFound`."""
        reply = await self._call(
            ReadFile(id=self._next_id(), sandbox_id=self.sandbox_id, path=path), FileReply
        )
        return reply.data

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """A file's text; `BadRequest` if it is not text in `encoding`."""
        codec = args.encoding(encoding)
        return args.decode(await self.read_file(path), codec, f"file {path}")

    async def write_file(self, path: str, data: bytes | str, *, mode: int = 0o644) -> None:
        """Write a whole file (at most 15 MiB), creating its parent folders."""
        payload = args.data(data)
        if len(payload) > MAX_DATA:
            raise BadRequest(
                f"write_file takes at most {MAX_DATA >> 20} MiB ({len(payload)} bytes given);"
                " use upload() for larger files"
            )
        await self._call(
            WriteFile(
                id=self._next_id(), sandbox_id=self.sandbox_id, path=path, data=payload, mode=mode
            ),
            Done,
        )

    async def write_text(self, path: str, text: str, encoding: str = "utf-8") -> None:
        """Write a file's text."""
        codec = args.encoding(encoding)
        try:
            payload = args.text(text, "text").encode(codec)
        except UnicodeEncodeError as exc:
            raise BadRequest(f"text cannot be written as {codec}: {exc}") from None
        await self.write_file(path, payload)

    async def upload(self, local: str | PathLike[str], remote: str) -> FileStat:
        """Copy a local file or folder to `remote`, streamed (any size)."""
        self._require_record()
        conn = self.cluster.connection(self.sandbox_id)
        return await _transfer.upload(conn, self.sandbox_id, local, remote)

    async def download(self, remote: str, local: str | PathLike[str]) -> FileStat:
        """Copy a file or folder out of the sandbox, streamed (any size)."""
        self._require_record()
        conn = self.cluster.connection(self.sandbox_id)
        return await _transfer.download(conn, self.sandbox_id, remote, local)

    # ------------------------------------------------------------------ images, stats, ports

    async def commit(
        self,
        image: str,
        *,
        message: str = "",
        changes: Sequence[str] = (),
        pause: bool = True,
    ) -> ImageInfo:
        """Save the sandbox's file system as image `image` (``name:tag``) on its host.

        A new sandbox can then start from it (``SandboxConfig(image=image)``). `changes` are
        Dockerfile instructions for the image's config (``"ENV A=1"``, ``"WORKDIR /app"``);
        `pause` freezes the sandbox's processes while the image is written.
        """
        if isinstance(changes, str):
            raise BadRequest("changes takes a list of Dockerfile instructions, not one string")
        changes = args.strings(changes, "changes", "['ENV A=1']")
        self.cluster.connection(self.sandbox_id).require("commit", "commit a sandbox")
        reply = await self._call(
            CommitSandbox(
                id=self._next_id(),
                sandbox_id=self.sandbox_id,
                image=image,
                message=message,
                changes=changes,
                pause=pause,
            ),
            ImageReply,
        )
        return reply.image

    async def stats(self) -> SandboxStats:
        """Live resource use: cpu (percent over about a second, and seconds), memory, pids.

        Takes one to two seconds: the engine compares two samples about a second apart.
        """
        self.cluster.connection(self.sandbox_id).require("stats", "report resource use")
        reply = await self._call(
            ReadStats(id=self._next_id(), sandbox_id=self.sandbox_id), StatsReply
        )
        return reply.stats

    @asynccontextmanager
    async def expose_port(
        self,
        port: int,
        *,
        local_port: int = 0,
        local_host: str = "127.0.0.1",
        address: str = "127.0.0.1",
        on_error: Callable[[RockError], object] | None = None,
    ) -> AsyncIterator[PortForward]:
        """Make `port` of the sandbox reachable at a local address while the block runs.

        ``async with sb.expose_port(8000) as (host, port):`` then connect to ``host:port``.
        Every connection is carried through the agent link into the sandbox (it needs no
        network); a failed one is reset, and its error is kept in the forward's `errors` and
        given to `on_error`. The link is looked up per connection, so the forward keeps
        working after the cluster reconnects to the sandbox's host.
        """
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise BadRequest(f"port must be between 1 and 65535, got {port!r}")  # as `_ports`
        args.count(local_port, "local_port", 0, 65535)
        args.text(local_host, "local_host")
        args.text(address, "address")
        args.callback(on_error, "on_error", "the error of a failed connection")
        self._require_record()
        cluster, sandbox_id = self.cluster, self.sandbox_id
        cluster.connection(sandbox_id).require("ports", "forward ports")
        async with open_port_forward(
            lambda: cluster.connection(sandbox_id),
            sandbox_id,
            port,
            local_host=local_host,
            local_port=local_port,
            address=address,
            on_error=on_error,
        ) as forward:
            yield forward

    def __repr__(self) -> str:
        state = self._record.state.value if self._record else "not started"
        return f"<Sandbox {self._requested_id or ''} {self._spec.image} {state}>"
