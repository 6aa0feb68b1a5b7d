"""The agent's request table: which handler carries out each request, and whether a
connection may make a request that names a sandbox.

Rules:
- Every request the agent serves has one handler here (`HANDLERS`), called as
  ``handler(server, connection, request)``; `AgentServer.handle` answers a request with none
  as `BadRequest`.
- A request naming a sandbox (but a create, which the runtime checks itself) is authorized
  before its handler runs (`authorize`): another owner's sandbox is reported exactly as a
  missing one is.
- A request to a session the agent holds is authorized by the owner that session recorded,
  without asking the engine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio

from rock_core import SandboxNotFound
from rock_core.protocol import (
    BuildImage,
    ClaimConnection,
    CommitSandbox,
    CoreReport,
    CreateSandbox,
    CreateSession,
    Download,
    Execute,
    ExecuteStreamed,
    Expect,
    ForwardPort,
    InspectSandbox,
    Interrupt,
    Keepalive,
    ListenPort,
    ListImages,
    ListSandboxes,
    OpenTerminal,
    PauseSandbox,
    Ping,
    PruneImages,
    ReadEnds,
    ReadFile,
    ReadHostView,
    ReadLogs,
    ReadMetrics,
    ReadStats,
    RemoveSandbox,
    Reply,
    Request,
    ResizeTerminal,
    ResumeSandbox,
    RunCommand,
    SendInput,
    SetTimeouts,
    StartSandbox,
    StopSandbox,
    Upload,
    WaitCommand,
    WarmImage,
    WriteFile,
)
from rock_core.protocol import CloseSession as CloseSessionRequest
from rock_core.serving import Connection

from . import (
    _build,
    _checkpoints,
    _commands,
    _files,
    _images,
    _logs,
    _pause,
    _ports,
    _reverse,
    _sandboxes,
    _stats,
    _terminal,
    _top,
)
from ._ends_log import read_ends
from ._exec_streamed import execute_streamed
from ._metrics_serve import read_metrics
from ._runtime import ContainerRuntime
from ._shell import ShellSession

Handler = Callable[[Any, Connection, Any], Awaitable[Reply]]

HANDLERS: dict[type[Any], Handler] = {
    Ping: _sandboxes.ping,
    CreateSandbox: _top.counting_starts(_sandboxes.create),
    StopSandbox: _sandboxes.stop,
    StartSandbox: _sandboxes.start,
    RemoveSandbox: _sandboxes.remove,
    InspectSandbox: _sandboxes.inspect,
    ListSandboxes: _sandboxes.list_sandboxes,
    CreateSession: _commands.create_session,
    CloseSessionRequest: _commands.close_session,
    RunCommand: _commands.run,
    SendInput: _commands.send_input,
    Expect: _commands.expect,
    WaitCommand: _commands.wait,
    Interrupt: _commands.interrupt,
    Execute: _commands.execute,
    ExecuteStreamed: execute_streamed,
    ReadFile: _files.read_file,
    WriteFile: _files.write_file,
    Upload: _files.upload,
    Download: _files.download,
    ListImages: _images.list_images,
    WarmImage: _images.warm_image,
    PruneImages: _images.prune_images,
    CommitSandbox: _images.commit_sandbox,
    BuildImage: _build.build_image,
    ReadStats: _stats.read_stats,
    ReadLogs: _logs.read_logs,
    ForwardPort: _ports.forward_port,
    ListenPort: _reverse.listen_port,
    ClaimConnection: _reverse.claim_connection,
    SetTimeouts: _sandboxes.set_timeouts,
    Keepalive: _sandboxes.keepalive,
    ReadMetrics: read_metrics,
    ReadHostView: _top.read_host_view,
    CoreReport: _top.core_report,
    PauseSandbox: _pause.pause,
    ResumeSandbox: _pause.resume,
    OpenTerminal: _terminal.open_terminal,
    ResizeTerminal: _terminal.resize_terminal,
    **_checkpoints.HANDLERS,
    ReadEnds: read_ends,
}

_SESSION_REQUESTS = (CloseSessionRequest, RunCommand, SendInput, Expect, WaitCommand, Interrupt)


class _Server(Protocol):
    host_id: str
    runtime: ContainerRuntime
    sessions: dict[tuple[str, str], ShellSession]
    creating: dict[str, set[anyio.Event]]


async def authorize(server: _Server, conn: Connection, sandbox_id: str, request: Request) -> None:
    """`SandboxNotFound` unless the connection may act on the sandbox.

    Another owner's sandbox is reported exactly as a missing one is.
    """
    missing = SandboxNotFound(
        f"no sandbox {sandbox_id!r} on host {server.host_id}", sandbox_id=sandbox_id
    )
    if isinstance(request, RemoveSandbox):  # a create on its way ends first (`_sandboxes`)
        await _sandboxes.creates_ended(server.creating, sandbox_id)
    session = server.sessions.get((sandbox_id, getattr(request, "session", "")))
    if session is not None and isinstance(request, _SESSION_REQUESTS):
        if not conn.principal.may_act_on(*session.sandbox_owner):
            raise missing
        return
    try:
        info = await server.runtime.inspect(sandbox_id)
    except SandboxNotFound:
        raise missing from None
    if not conn.principal.may_act_on(info.owner_uid, info.owner):
        raise missing


__all__ = ["HANDLERS", "Handler", "authorize"]
