"""`Sandbox`: one isolated container with named shell sessions, commands and files.

With no cluster given, a `Sandbox` borrows its event loop's shared embedded core with one local
agent (`_embedded`): any task may start, use or delete it. With a cluster, it is placed by that
cluster's scheduler.

Rules:
- Where the sandbox runs (the given cluster, or the borrowed shared core) and its record are
  a `Placement` (`_placement`); its commands and sessions are `SandboxCommands`
  (`_commands`), which sees the sandbox only through its public id, state and cluster. The
  `Sandbox` ties the two to its lifecycle and offers files, timeouts, images, stats, ports.
- Stopping, restarting or deleting ends the container's processes, so it forgets the open
  sessions; the default one is opened again on next use.
- `Checkpoint` lives here too: a sandbox's `checkpoint()` makes one and a checkpoint's
  `fork()` makes sandboxes, so the two classes name each other. A `Checkpoint` remembers the
  cluster it was made on; `fork` starts sandboxes there (on any of its hosts: the core
  streams the checkpoint to a host that lacks it) and `delete` removes it on every host. A
  fork's config gives everything but the image (the checkpoint's). See docs/checkpoints.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Literal, TypeVar

from rock_core import BadRequest, Cluster, SandboxRecord, SandboxState
from rock_core import Checkpoint as CoreCheckpoint
from rock_core.protocol import (
    CheckpointInfo,
    CommitSandbox,
    DeadlinesReply,
    FileStat,
    ImageInfo,
    ImageReply,
    Keepalive,
    ReadStats,
    Reply,
    Request,
    SandboxDeadlines,
    SandboxStats,
    SetTimeouts,
    StatsReply,
)

from . import _arguments as args
from . import _forward, _logs, _reverse, _sandbox_files, _sandbox_jobs, _transfer
from ._commands import DEFAULT_OUTPUT_LIMIT, DEFAULT_SESSION, SandboxCommands
from ._config import SandboxConfig
from ._interactive import InteractiveProcess
from ._pausing import Pausable
from ._placement import HasCore, Placement, core_of
from ._results import CommandResult, ExecResult
from ._status import SandboxStatus
from ._terminal import SandboxTerminals
from ._transfer import Local, OnProgress

R = TypeVar("R", bound=Reply)


class Sandbox(Pausable, SandboxTerminals):
    """A sandbox; use ``async with Sandbox(config) as sb`` or `start()` / `stop()`."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        cluster: Cluster | HasCore | None = None,
        sandbox_id: str | None = None,
    ) -> None:
        if config is not None and not isinstance(config, SandboxConfig):
            raise BadRequest(f"config must be a SandboxConfig or None, got {config!r}")
        self._place = Placement(None if cluster is None else core_of(cluster, "or None"))
        self.config = config or SandboxConfig()
        self._spec = self.config.to_spec()
        self._requested_id = sandbox_id or self.config.sandbox_id
        self._sessions: set[str] = set()  # open sessions, shared with `_commands`
        self._commands = SandboxCommands(self, self._sessions, self._spec.memory)

    @classmethod
    def attach(cls, cluster: Cluster | HasCore, sandbox_id: str) -> Sandbox:
        """A `Sandbox` for a sandbox `cluster` already holds (for example one it adopted)."""
        cluster = core_of(cluster)
        record = cluster.record(sandbox_id)
        sandbox = cls(SandboxConfig(image=record.spec.image), cluster=cluster)
        sandbox._spec = record.spec
        sandbox._commands.memory = record.spec.memory
        sandbox._place.record = record
        return sandbox

    # ------------------------------------------------------------------ lifecycle

    @property
    def _record(self) -> SandboxRecord | None:
        return self._place.record

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
        if self._place.cluster is None:
            raise BadRequest("the sandbox has not been started")
        return self._place.cluster

    async def start(self) -> Sandbox:
        """Create and start the sandbox (with an embedded local core if no cluster was given)."""
        if self._record is not None and self._record.state is SandboxState.RUNNING:
            return self
        if self._record is not None and self._record.state is SandboxState.STOPPED:
            await self.cluster.start_sandbox(self._record.sandbox_id)
            self._sessions.clear()
            return self
        await self._place.create(self._spec, self._requested_id, self.config.queue_timeout())
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
        try:
            await self._place.delete()
        finally:
            self._sessions.clear()

    async def aclose(self) -> None:
        """Delete the sandbox; the same as `delete()`."""
        await self.delete()

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
        reply = await self._timeouts_call(Keepalive(sandbox_id=self.sandbox_id))
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
        return await self._commands.call(request, expect)

    # ------------------------------------------------------------------ sessions

    async def create_session(
        self, session: str = DEFAULT_SESSION, *, env: dict[str, str] | None = None, cwd: str = ""
    ) -> str:
        """Start a named, stateful shell; cwd, variables and functions persist in it."""
        return await self._commands.create_session(session, env=env, cwd=cwd)

    async def close_session(self, session: str) -> None:
        """End a session's shell and whatever it still runs."""
        await self._commands.close_session(session)

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
        return await self._commands.run(
            cmd,
            session,
            timeout=timeout,
            idle_timeout=idle_timeout,
            check=check,
            output_limit=output_limit,
            on_output=on_output,
        )

    async def start_interactive(
        self, cmd: str, session: str | None = None, *, output_limit: int = DEFAULT_OUTPUT_LIMIT
    ) -> InteractiveProcess:
        """Start a program that reads input (a REPL, an installer's prompts) in a session.

        Drive it with `expect`, `send`/`sendline`, `interrupt` and `wait`.
        """
        return await self._commands.start_interactive(cmd, session, output_limit=output_limit)

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
        return await self._commands.execute(
            argv, cwd=cwd, env=env, timeout=timeout, stdin=stdin, check=check
        )

    # ------------------------------------------------------------------ files

    # Whole small files (`_sandbox_files`): `await sb.write_text("/w/a.py", "print(1)")`.
    read_file = _sandbox_files.read_file
    read_text = _sandbox_files.read_text
    write_file = _sandbox_files.write_file
    write_text = _sandbox_files.write_text

    async def upload(self, local: Local, remote: str, *, progress: OnProgress = None) -> FileStat:
        """Copy a local file or folder to `remote`, streamed; `progress(Progress)`: bytes sent."""
        self._require_record()
        conn = self.cluster.connection(self.sandbox_id)
        return await _transfer.upload(conn, self.sandbox_id, local, remote, progress)

    async def download(self, remote: str, local: Local, *, progress: OnProgress = None) -> FileStat:
        """Copy a file or folder out of the sandbox, streamed; `progress`: bytes received."""
        self._require_record()
        conn = self.cluster.connection(self.sandbox_id)
        return await _transfer.download(conn, self.sandbox_id, remote, local, progress)

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
                sandbox_id=self.sandbox_id,
                image=image,
                message=message,
                changes=changes,
                pause=pause,
            ),
            ImageReply,
        )
        return reply.image

    async def checkpoint(self, name: str | None = None, *, keep: bool = False) -> Checkpoint:
        """Freeze this running sandbox's file system as a checkpoint on its host.

        It pauses only while the engine copies its changes. `name` is the checkpoint's id
        (lowercase letters, digits, ``.``, ``_``, ``-``; default: a new ``ck-...``). The
        checkpoint goes with this sandbox's owner (the program) unless `keep` is True.
        """
        value = await self.cluster.checkpoint(self.sandbox_id, name=name, keep=keep)
        return Checkpoint(value, self.cluster)

    async def stats(self) -> SandboxStats:
        """Live resource use: cpu (percent over about a second, and seconds), memory, pids.

        Takes one to two seconds: the engine compares two samples about a second apart.
        """
        self.cluster.connection(self.sandbox_id).require("stats", "report resource use")
        reply = await self._call(ReadStats(sandbox_id=self.sandbox_id), StatsReply)
        return reply.stats

    # `async with sb.expose_port(8000) as (host, port):`: a port inside, reachable here.
    expose_port = _forward.expose_port

    # `async with sb.expose_host_port(8000) as url:`: the caller's port, inside (`_reverse`).
    expose_host_port = _reverse.expose_host_port
    # `async for chunk in sb.logs(follow=True):`: what the container printed (`_logs`).
    logs = _logs.logs

    # `job = await sb.spawn("make test")`: background jobs that outlive the caller (`_jobs`).
    spawn = _sandbox_jobs.spawn
    job = _sandbox_jobs.job
    jobs = _sandbox_jobs.jobs

    def __repr__(self) -> str:
        state = self._record.state.value if self._record else "not started"
        return f"<Sandbox {self._requested_id or ''} {self._spec.image} {state}>"


class Checkpoint:
    """A sandbox's file system frozen as an image on its host (see docs/checkpoints.md).

    `checkpoint_id`, `host_id` (where it was made), `image` (``rock-checkpoint:<id>``, usable
    as any config's or pool's image), `size` (bytes), `created` (unix time), `source` (the
    sandbox it was made from) and `kept` (it outlives its owner).
    """

    def __init__(self, value: CoreCheckpoint, cluster: Cluster) -> None:
        self.value = value
        self.cluster = cluster
        self.checkpoint_id = value.checkpoint_id
        self.host_id = value.host_id
        self.image = value.image
        self.size = value.size
        self.created = value.created
        self.source = value.source
        self.kept = value.kept

    def __repr__(self) -> str:
        return f"Checkpoint({self.checkpoint_id!r}, host={self.host_id!r}, source={self.source!r})"

    async def fork(self, n: int, config: SandboxConfig | None = None) -> list[Sandbox]:
        """Start `n` sandboxes from this checkpoint with `config`'s settings (not its image)."""
        return await fork(self.cluster, self, n, config)

    async def delete(self) -> list[CheckpointInfo]:
        """Remove it on every host; return the copies kept because forks still use them."""
        return await self.cluster.delete_checkpoint(self.value)


async def fork(
    cluster: Cluster, checkpoint: Checkpoint | str, n: int, config: SandboxConfig | None = None
) -> list[Sandbox]:
    """`n` new running sandboxes of `cluster` from `checkpoint` (a `Checkpoint` or its id)."""
    if config is not None and not isinstance(config, SandboxConfig):
        raise BadRequest(f"config must be a SandboxConfig or None, got {config!r}")
    spec = (config or SandboxConfig()).to_spec()
    target = checkpoint.value if isinstance(checkpoint, Checkpoint) else checkpoint
    records = await cluster.fork(target, n, spec)
    return [Sandbox.attach(cluster, record.sandbox_id) for record in records]
