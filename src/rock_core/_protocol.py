"""Every message between the core and an agent, as msgspec tagged unions.

Rules:
- A connection carries frames (see `_framing`); each frame holds exactly one message.
- The client (core) opens with `Hello`; the agent answers `Welcome` or `ErrorReply`. The
  protocol version must match exactly; a mismatch is a `ProtocolError` naming both versions.
- Every request carries an `id` unique on its connection. The agent answers each request with
  exactly one final message carrying the same `id`: a `*Reply` or an `ErrorReply`. Before it, a
  request may produce any number of `Output` / `StreamData` events with that id.
- Byte streams (uploads, downloads) use credit flow control: the receiver grants `StreamCredit`
  and the sender never has more than the granted chunks in flight, so a 200 MB file is never
  held whole in memory on either side and one transfer never blocks the others.
- Schema evolution: new fields get defaults, tags never change meaning; encoded fixtures of old
  messages are kept in the tests and must still decode.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ._errors import ProtocolError

PROTOCOL_VERSION = 1

# ---------------------------------------------------------------------------- shared values


class SandboxSpec(msgspec.Struct, kw_only=True, frozen=True):
    """Everything an agent needs to create a sandbox's container."""

    image: str
    cpus: float = 1.0
    memory: int = 1 << 30  # bytes; swap is capped at the same value
    pids: int = 1024
    disk: str = ""  # engine storage-opt size, e.g. "10G"; empty = engine default
    network: bool = False
    env: dict[str, str] = {}
    workdir: str = ""
    labels: dict[str, str] = {}
    pull: str = "missing"  # "missing" | "never" | "always"
    user: str = ""


class SandboxInfo(msgspec.Struct, kw_only=True):
    """An agent's view of one sandbox (one container)."""

    sandbox_id: str
    container_id: str
    image: str
    state: str  # the engine's container state: created, running, exited, ...
    owner: str
    created_at: float
    labels: dict[str, str] = {}
    exit_code: int | None = None
    sessions: list[str] = []


class CommandResult(msgspec.Struct, kw_only=True):
    """The outcome of a command run in a session."""

    output: bytes
    exit_code: int | None
    timed_out: bool = False
    idle_timed_out: bool = False
    truncated: bool = False
    total_bytes: int = 0
    output_path: str = ""  # full output inside the sandbox, when truncated
    session_closed: bool = False
    duration: float = 0.0


class ExecResult(msgspec.Struct, kw_only=True):
    """The outcome of a one-off command: stdout and stderr apart."""

    stdout: bytes
    stderr: bytes
    exit_code: int | None
    timed_out: bool = False
    duration: float = 0.0


class FileStat(msgspec.Struct, kw_only=True):
    """What a download or upload moved."""

    path: str
    size: int
    is_dir: bool = False


# ---------------------------------------------------------------------------- handshake


class Message(msgspec.Struct, tag_field="op", kw_only=True):
    """Base of every message on the wire; the tag is in the field `op`."""


class Hello(Message, tag="hello"):
    """The client's opening message."""

    protocol: int
    client: str
    owner: str


class Welcome(Message, tag="welcome"):
    """The agent's answer to `Hello`: who it is and what the host has."""

    protocol: int
    agent_version: str
    host_id: str
    cpus: float
    memory: int
    capabilities: list[str] = []
    images: list[str] = []


# ---------------------------------------------------------------------------- requests


class Request(Message):
    """Base of every request; `id` ties replies and events to it."""

    id: int


class Ping(Request, tag="ping"):
    """Liveness check; answered with `Pong`."""


class CreateSandbox(Request, tag="create"):
    """Create and start a container for `sandbox_id` (idempotent for the same spec)."""

    sandbox_id: str
    spec: SandboxSpec


class StopSandbox(Request, tag="stop"):
    """Stop the container (kept, restartable)."""

    sandbox_id: str
    timeout: float = 10.0


class StartSandbox(Request, tag="start"):
    """Start a stopped container again."""

    sandbox_id: str


class RemoveSandbox(Request, tag="remove"):
    """Remove the container and everything in it."""

    sandbox_id: str


class InspectSandbox(Request, tag="inspect"):
    """Report one sandbox."""

    sandbox_id: str


class ListSandboxes(Request, tag="list"):
    """Report the sandboxes of this host (all owners, or one)."""

    owner: str = ""


class CreateSession(Request, tag="session_create"):
    """Start a named, stateful shell in a sandbox."""

    sandbox_id: str
    session: str
    env: dict[str, str] = {}
    cwd: str = ""


class CloseSession(Request, tag="session_close"):
    """End a session's shell."""

    sandbox_id: str
    session: str


class RunCommand(Request, tag="run"):
    """Run a command in a session; output streams as `Output` events.

    With ``interactive`` the command gets the session's input (see `SendInput`) and the reply
    comes at once; `WaitCommand` later collects the result.
    """

    sandbox_id: str
    session: str
    command: str
    timeout: float | None = None
    idle_timeout: float | None = None
    output_limit: int = 1 << 20
    interactive: bool = False
    stream: bool = True


class SendInput(Request, tag="send"):
    """Write bytes to the input of a session's interactive command."""

    sandbox_id: str
    session: str
    data: bytes


class Expect(Request, tag="expect"):
    """Wait until the session's interactive output matches one of the regex patterns."""

    sandbox_id: str
    session: str
    patterns: list[str]
    timeout: float = 30.0


class WaitCommand(Request, tag="wait"):
    """Wait for a session's interactive command to end and return its result."""

    sandbox_id: str
    session: str
    timeout: float | None = None


class Interrupt(Request, tag="interrupt"):
    """Send SIGINT to what the session is running (the shell itself survives)."""

    sandbox_id: str
    session: str


class Execute(Request, tag="exec"):
    """Run a one-off command (argv, no shell state) with stdout and stderr apart."""

    sandbox_id: str
    argv: list[str]
    cwd: str = ""
    env: dict[str, str] = {}
    timeout: float | None = None
    stdin: bytes = b""


class ReadFile(Request, tag="read"):
    """Read a whole (small) file; large files go through `Download`."""

    sandbox_id: str
    path: str


class WriteFile(Request, tag="write"):
    """Write a whole file, creating parent folders."""

    sandbox_id: str
    path: str
    data: bytes
    mode: int = 0o644


class Upload(Request, tag="upload"):
    """Receive a tar stream (`StreamData` from the client) and unpack it at `path`."""

    sandbox_id: str
    path: str


class Download(Request, tag="download"):
    """Send `path` (file or folder) as a tar stream of `StreamData` events."""

    sandbox_id: str
    path: str


class Cancel(Request, tag="cancel"):
    """Abandon the request `target`; it ends with a `TimedOut`/cancelled error reply."""

    target: int


# ---------------------------------------------------------------------------- events


class Output(Message, tag="output"):
    """A chunk of a command's output, in order."""

    id: int
    data: bytes


class StreamData(Message, tag="data"):
    """A chunk of a byte stream; empty `data` with ``end`` closes it."""

    id: int
    data: bytes
    end: bool = False


class StreamCredit(Message, tag="credit"):
    """The receiver of a stream may take `chunks` more chunks."""

    id: int
    chunks: int


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

    data: bytes


class TransferReply(Reply, tag="transferred"):
    """Answer to `Upload` / `Download` once the stream is complete."""

    stat: FileStat


class ErrorReply(Reply, tag="error"):
    """The request failed; `code` names a class of the `RockError` tree."""

    code: str
    message: str
    details: dict[str, Any] = {}


ClientMessage = (
    Hello
    | Ping
    | CreateSandbox
    | StopSandbox
    | StartSandbox
    | RemoveSandbox
    | InspectSandbox
    | ListSandboxes
    | CreateSession
    | CloseSession
    | RunCommand
    | SendInput
    | Expect
    | WaitCommand
    | Interrupt
    | Execute
    | ReadFile
    | WriteFile
    | Upload
    | Download
    | Cancel
    | StreamData
    | StreamCredit
)

AgentMessage = (
    Welcome
    | Pong
    | Done
    | SandboxReply
    | SandboxListReply
    | CommandReply
    | ExpectReply
    | ExecReply
    | FileReply
    | TransferReply
    | ErrorReply
    | Output
    | StreamData
    | StreamCredit
)

_encoder = msgspec.msgpack.Encoder(order="sorted")
_client_decoder = msgspec.msgpack.Decoder(ClientMessage)
_agent_decoder = msgspec.msgpack.Decoder(AgentMessage)


def encode(message: Message) -> bytes:
    """Encode one message (the frame payload)."""
    return _encoder.encode(message)


def encode_value(value: msgspec.Struct) -> bytes:
    """Encode any protocol value deterministically (used for digests of specs)."""
    return _encoder.encode(value)


def decode_client_message(payload: bytes) -> ClientMessage:
    """Decode a message sent by a client; garbage raises `ProtocolError`."""
    try:
        message: ClientMessage = _client_decoder.decode(payload)
        return message
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"undecodable message from client: {exc}") from exc


def decode_agent_message(payload: bytes) -> AgentMessage:
    """Decode a message sent by an agent; garbage raises `ProtocolError`."""
    try:
        message: AgentMessage = _agent_decoder.decode(payload)
        return message
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"undecodable message from agent: {exc}") from exc
