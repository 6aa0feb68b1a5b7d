"""The protocol's base messages: handshake, sandbox and session requests, files, streams, replies.

Rules:
- Every message is a `msgspec.Struct` in one tagged union; the tag is the field `op` and never
  changes meaning. New fields get defaults.
- `Request.id` ties replies and events to their request. Call sites leave it unset (0): the
  connection that sends a request assigns it (`AgentConnection.open_request`), and an agent
  rejects a request that arrives without one.
- Validation of what a client may send is in the field types (`_schema`) and in
  `__post_init__`, so a bad value fails where the message is built or decoded, on either side.
- Images, stats, ports, timeouts and unasked changes are the other family (`_messages_host`);
  the unions and the codec are in `_protocol`.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ._errors import BadRequest
from ._schema import (
    MAX_DATA,
    AbsPath,
    AbsPathOrEmpty,
    Argv,
    Credit,
    Data,
    Env,
    FileMode,
    GraceSeconds,
    LeaseSeconds,
    OutputLimit,
    Owner,
    Patterns,
    RequestId,
    SandboxId,
    Seconds,
    SessionName,
    ShortText,
    Text,
)
from ._values import CommandResult, ExecResult, FileStat, SandboxInfo, SandboxSpec

PROTOCOL_VERSION = 1
"""The protocol version both sides name in the handshake; it must match exactly."""

# ---------------------------------------------------------------------------- handshake


class Message(msgspec.Struct, tag_field="op", kw_only=True):
    """Base of every message on the wire; the tag is in the field `op`."""


class Hello(Message, tag="hello"):
    """The client's opening message."""

    protocol: int
    client: ShortText
    owner: Owner
    # Seconds the agent keeps this owner's sandboxes after its last message; 0: the agent's
    # default. Every message renews it.
    lease: LeaseSeconds = 0.0
    # Unasked messages the client understands (the agent sends no others): "changed".
    accepts: Annotated[list[ShortText], msgspec.Meta(max_length=16)] = []
    # An administrator's connection (the `rock` CLI): it may act on the sandboxes of every
    # owner of its user (of every user, for root), and owns none itself.
    admin: bool = False


SHARED_ADMISSION = "shared-admission"
"""The agent's capability: it admits creates against its host's start cap and capacity for every
core that uses it, and refuses one that would go over with `HostFull` (rock_agent._admit)."""


class Welcome(Message, tag="welcome"):
    """The agent's answer to `Hello`: who it is and what the host has."""

    protocol: int
    agent_version: str
    host_id: str
    cpus: float
    memory: int
    capabilities: list[str] = []
    images: list[str] = []
    instance: str = ""  # differs each time the agent process starts
    lease: float = 0.0  # the lease the agent granted this owner, in seconds
    # With SHARED_ADMISSION: the agent's host-wide start cap and sandbox limit (0: none).
    max_starts: int = 0
    max_sandboxes: int = 0


# ---------------------------------------------------------------------------- requests


class Request(Message, kw_only=True):
    """Base of every request; `id` ties replies and events to it.

    Leave `id` unset (0) when building a request: the connection sending it assigns the next id
    of that connection. On the wire it is always set; a request without one is rejected.
    """

    id: RequestId = 0


class Ping(Request, tag="ping"):
    """Liveness check; answered with `Pong`."""


class CreateSandbox(Request, tag="create"):
    """Create and start a container for `sandbox_id` (idempotent for the same spec)."""

    sandbox_id: SandboxId
    spec: SandboxSpec


class StopSandbox(Request, tag="stop"):
    """Stop the container (kept, restartable)."""

    sandbox_id: SandboxId
    timeout: GraceSeconds = 10.0


class StartSandbox(Request, tag="start"):
    """Start a stopped container again."""

    sandbox_id: SandboxId


class RemoveSandbox(Request, tag="remove"):
    """Remove the container and everything in it."""

    sandbox_id: SandboxId


class InspectSandbox(Request, tag="inspect"):
    """Report one sandbox."""

    sandbox_id: SandboxId


class ListSandboxes(Request, tag="list"):
    """Report the sandboxes of this host (all owners, or one)."""

    owner: Annotated[str, msgspec.Meta(max_length=256)] = ""


class CreateSession(Request, tag="session_create"):
    """Start a named, stateful shell in a sandbox."""

    sandbox_id: SandboxId
    session: SessionName
    env: Env = {}
    cwd: AbsPathOrEmpty = ""


class CloseSession(Request, tag="session_close"):
    """End a session's shell."""

    sandbox_id: SandboxId
    session: SessionName


class RunCommand(Request, tag="run"):
    """Run a command in a session; output streams as `Output` events.

    With ``interactive`` the command gets the session's input (see `SendInput`) and the reply
    comes at once; `WaitCommand` later collects the result.
    """

    sandbox_id: SandboxId
    session: SessionName
    command: Text
    timeout: Seconds | None = None
    idle_timeout: Seconds | None = None
    output_limit: OutputLimit = 1 << 20
    interactive: bool = False
    stream: bool = True

    def __post_init__(self) -> None:
        check_held_output(self.output_limit, streamed=self.stream and not self.interactive)


def check_held_output(output_limit: object, *, streamed: bool) -> None:
    """`BadRequest` if output kept for one reply (not streamed) could not fit a frame."""
    if not streamed and isinstance(output_limit, int) and output_limit > MAX_DATA:
        raise BadRequest(
            f"output_limit {output_limit} is over {MAX_DATA >> 20} MiB, the most a reply "
            "holds: stream larger output (on_output) or read all of it from the result's "
            "output_path"
        )


class SendInput(Request, tag="send"):
    """Write bytes to the input of a session's interactive command."""

    sandbox_id: SandboxId
    session: SessionName
    data: bytes


class Expect(Request, tag="expect"):
    """Wait until the session's interactive output matches one of the regex patterns."""

    sandbox_id: SandboxId
    session: SessionName
    patterns: Patterns
    timeout: Seconds = 30.0


class WaitCommand(Request, tag="wait"):
    """Wait for a session's interactive command to end and return its result."""

    sandbox_id: SandboxId
    session: SessionName
    timeout: Seconds | None = None


class Interrupt(Request, tag="interrupt"):
    """Send SIGINT to what the session is running (the shell itself survives)."""

    sandbox_id: SandboxId
    session: SessionName


class Execute(Request, tag="exec"):
    """Run a one-off command (argv, no shell state) with stdout and stderr apart."""

    sandbox_id: SandboxId
    argv: Argv
    cwd: AbsPathOrEmpty = ""
    env: Env = {}
    timeout: Seconds | None = None
    stdin: bytes = b""


class ReadFile(Request, tag="read"):
    """Read a whole (small) file; large files go through `Download`."""

    sandbox_id: SandboxId
    path: AbsPath


class WriteFile(Request, tag="write"):
    """Write a whole file, creating parent folders."""

    sandbox_id: SandboxId
    path: AbsPath
    data: Data  # larger files go through `Upload`
    mode: FileMode = 0o644


class Upload(Request, tag="upload"):
    """Receive a tar stream (`StreamData` from the client) and unpack it at `path`."""

    sandbox_id: SandboxId
    path: AbsPath


class Download(Request, tag="download"):
    """Send `path` (file or folder) as a tar stream of `StreamData` events."""

    sandbox_id: SandboxId
    path: AbsPath


class Cancel(Request, tag="cancel"):
    """Abandon the request `target`; it ends with a `TimedOut`/cancelled error reply."""

    target: RequestId


# ---------------------------------------------------------------------------- events


class Output(Message, tag="output"):
    """A chunk of a command's output, in order."""

    id: int
    data: bytes


class StreamData(Message, tag="data"):
    """A chunk of a byte stream; empty `data` with ``end`` closes it."""

    id: RequestId
    data: Annotated[bytes, msgspec.Meta(max_length=1 << 20)]
    end: bool = False


class StreamCredit(Message, tag="credit"):
    """The receiver of a stream may take `chunks` more chunks."""

    id: RequestId
    chunks: Credit


# ---------------------------------------------------------------------------- replies


class Reply(Message):
    """Base of every final answer to a request."""

    id: int


class Pong(Reply, tag="pong"):
    """Answer to `Ping`."""

    time: float


class Done(Reply, tag="done"):
    """A request with nothing to return succeeded."""


class SandboxReply(Reply, tag="sandbox"):
    """Answer carrying one sandbox."""

    sandbox: SandboxInfo


class SandboxListReply(Reply, tag="sandboxes"):
    """Answer carrying several sandboxes."""

    sandboxes: list[SandboxInfo]
    # Sandboxes of the owner asked for that the agent removed on its own lately (a deadline).
    removed: list[SandboxChanged] = []


class CommandReply(Reply, tag="result"):
    """Answer to `RunCommand` / `WaitCommand`."""

    result: CommandResult


class ExpectReply(Reply, tag="expected"):
    """Answer to `Expect`: which pattern matched, and the output up to and including it."""

    index: int
    before: bytes
    match: bytes


class ExecReply(Reply, tag="exec_result"):
    """Answer to `Execute`."""

    result: ExecResult


class FileReply(Reply, tag="file"):
    """Answer to `ReadFile`."""

    data: Data


class TransferReply(Reply, tag="transferred"):
    """Answer to `Upload` / `Download` once the stream is complete."""

    stat: FileStat


class ErrorReply(Reply, tag="error"):
    """The request failed; `code` names a class of the `RockError` tree."""

    code: str
    message: str
    details: dict[str, Any] = {}


# ---------------------------------------------------------------------------- unasked


class SandboxChanged(Message, tag="changed", kw_only=True):
    """Sent unasked (id 0) to its owner's connections: a sandbox changed outside their requests.

    Only clients whose `Hello.accepts` lists "changed" get it. `cause` says what did it:
    "idle" or "lifetime" (it expired), "auto_delete", "request" (a request of another client),
    "engine" (something outside rock, or a stop whose cause this agent does not know).
    """

    id: int = 0
    sandbox_id: str
    state: str  # what it is now: "running", "stopped" or "deleted"
    cause: str
    reason: str = ""
    at: float = 0.0  # unix time of the change
    # Capability "end-reasons": why it ended (an `EndReason` value; "" from older agents or
    # for a start), and its init's exit code if it stopped (`_messages_events`).
    end: str = ""
    exit_code: int | None = None
