"""Every message between the core and an agent, as msgspec tagged unions.

Rules:
- A connection carries frames (see `_framing`); each frame holds exactly one message.
- The client (core) opens with `Hello`; the agent answers `Welcome` or `ErrorReply`. The
  protocol version must match exactly; a mismatch is a `ProtocolError` naming both versions.
- Every request carries an `id` unique on its connection. The agent answers each request with
  exactly one final message carrying the same `id`: a `*Reply` or an `ErrorReply`. Before it, a
  request may produce any number of `Output` / `StreamData` events with that id.
- The agent sends a message unasked (id 0, `SandboxChanged`) only to a client that listed its
  tag in `Hello.accepts`, so older clients never receive a message they cannot decode.
- Byte streams (uploads, downloads) use credit flow control: the receiver grants `StreamCredit`
  and the sender never has more than the granted chunks in flight, so a 200 MB file is never
  held whole in memory on either side and one transfer never blocks the others.
- Schema evolution: new fields get defaults, tags never change meaning; encoded fixtures of old
  messages are kept in the tests and must still decode.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import msgspec

from ._errors import BadRequest, ProtocolError, RockError
from ._schema import (
    MAX_DATA,
    TEXT_PATTERN,
    AbsPath,
    AbsPathOrEmpty,
    Argv,
    Bytes,
    Cpus,
    Credit,
    Data,
    DiskSize,
    Env,
    ExpirePolicy,
    FileMode,
    GraceSeconds,
    Image,
    Labels,
    LeaseSeconds,
    Memory,
    OutputLimit,
    Owner,
    Patterns,
    Percent,
    Pids,
    Port,
    PullPolicy,
    RequestId,
    SandboxId,
    Seconds,
    SecondsOrInf,
    SessionName,
    ShortText,
    Text,
    bad_request,
)

PROTOCOL_VERSION = 1

# ---------------------------------------------------------------------------- shared values


class SandboxSpec(msgspec.Struct, kw_only=True, frozen=True):
    """Everything an agent needs to create a sandbox's container (constraints: `_schema`)."""

    image: Image
    cpus: Cpus = 1.0
    memory: Memory = 1 << 30  # bytes; swap is capped at the same value
    pids: Pids = 1024
    disk: DiskSize = ""  # engine storage-opt size, e.g. "10G"; empty = engine default
    network: bool = False
    env: Env = {}
    workdir: AbsPathOrEmpty = ""
    labels: Labels = {}
    pull: PullPolicy = "missing"
    user: ShortText = ""
    # Lifetime, enforced by the agent (see `SandboxDeadlines`); None: no limit.
    idle_timeout: Seconds | None = None  # seconds without a request naming the sandbox
    lifetime: Seconds | None = None  # seconds from its latest start
    on_expire: ExpirePolicy = "stop"  # what expiry does: "stop" (files kept) or "delete"
    auto_delete_after: Seconds | None = None  # seconds after any stop


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
    spec: SandboxSpec | None = None  # as created; None for containers from older agents
    deadlines: SandboxDeadlines | None = None  # None from agents without timeouts
    owner_uid: int = -1  # the user of the owner's connections; -1 from older agents


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
    oom_killed: bool = False  # the kernel killed a process of the sandbox for memory meanwhile


class ExecResult(msgspec.Struct, kw_only=True):
    """The outcome of a one-off command: stdout and stderr apart."""

    stdout: bytes
    stderr: bytes
    exit_code: int | None
    timed_out: bool = False
    duration: float = 0.0
    oom_killed: bool = False  # the kernel killed a process of the sandbox for memory meanwhile
    truncated: bool = False  # stdout or stderr was longer than the agent keeps (the rest dropped)


class FileStat(msgspec.Struct, kw_only=True):
    """What a download or upload moved."""

    path: str
    size: int
    is_dir: bool = False
    skipped: list[str] = []  # entries that could not be copied (device files, ...), and why


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


# ---------------------------------------------------------------------------- requests


class Request(Message):
    """Base of every request; `id` ties replies and events to it."""

    id: RequestId


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


# ---------------------------------------------------------------------------- images, commit,
# stats and ports (requests, values and replies of "using what runs inside")


class ImageInfo(msgspec.Struct, kw_only=True):
    """One image on a host, as the engine reports it plus the agent's record of its use."""

    image_id: str
    tags: list[str] = []
    size: int = 0  # bytes, all its layers
    shared_size: int = 0  # bytes of `size` that other images use too
    created: float = 0.0  # unix time
    last_used: float = 0.0  # unix time; see docs/using-sandboxes.md for how it is derived
    containers: int = 0  # containers (any state) created from it


class ImageReport(msgspec.Struct, kw_only=True):
    """The images of one host and how much disk they take."""

    images: list[ImageInfo]
    total_size: int = 0  # bytes all image layers take on disk (shared layers counted once)
    disk_size: int = 0  # capacity of the file system holding them; 0 if unknown


class PruneResult(msgspec.Struct, kw_only=True):
    """What a prune removed, and the images' total size against its limit."""

    limit: int  # bytes the images may take
    total_before: int  # bytes all images took before
    total_after: int  # measured after (estimated for a dry run)
    freed: int
    removed: list[ImageInfo] = []
    errors: list[str] = []  # images that could not be removed, and why
    dry_run: bool = False


class SandboxStats(msgspec.Struct, kw_only=True):
    """Live resource use of one sandbox, from the engine's stats API."""

    sandbox_id: str
    time: float  # unix time of the reading
    cpu_percent: float  # 100 = one full cpu, over `interval`
    cpu_seconds: float  # cpu time used since the sandbox started
    interval: float  # seconds between the two readings `cpu_percent` compares
    online_cpus: int = 0
    memory: int = 0  # bytes in use, reclaimable page cache not counted
    memory_limit: int = 0
    memory_peak: int = 0
    pids: int = 0
    pids_limit: int = 0  # 0: no limit


class ListImages(Request, tag="images_list"):
    """Report the images of this host."""


class WarmImage(Request, tag="image_warm"):
    """Make `image` present on this host (pull it unless it is there already)."""

    image: Image


class PruneImages(Request, tag="images_prune"):
    """Remove least recently used images while all images take more than the limit.

    Exactly one of `max_bytes` and `max_percent` (of the capacity of the file system holding the
    engine's data) sets the limit. Images a container (any state) uses are never removed; with
    `only`, just images with a tag matching one of these shell patterns are candidates.
    """

    max_bytes: Bytes | None = None
    max_percent: Percent | None = None
    only: Annotated[list[ShortText], msgspec.Meta(max_length=256)] = []
    dry_run: bool = False


class CommitSandbox(Request, tag="commit"):
    """Save a sandbox's file system as the image `image` (``name:tag``)."""

    sandbox_id: SandboxId
    image: Image
    message: Annotated[str, msgspec.Meta(pattern=TEXT_PATTERN, max_length=65536)] = ""
    # Dockerfile instructions applied to the image's config
    changes: Annotated[list[ShortText], msgspec.Meta(max_length=256)] = []
    pause: bool = True


class ReadStats(Request, tag="stats"):
    """Report a sandbox's live resource use."""

    sandbox_id: SandboxId


class ForwardPort(Request, tag="forward"):
    """Carry one TCP connection to `port` inside a sandbox as a two-way stream.

    The agent connects inside the sandbox's network namespace, then grants `StreamCredit`; both
    sides send `StreamData` under the other's credit, and an ``end`` chunk half-closes that
    direction. The reply comes when both directions have ended.
    """

    sandbox_id: SandboxId
    port: Port
    # Where to connect, seen from inside the sandbox.
    address: Annotated[str, msgspec.Meta(pattern=TEXT_PATTERN, min_length=1, max_length=255)] = (
        "127.0.0.1"
    )


class ImageListReply(Reply, tag="images"):
    """Answer to `ListImages`."""

    report: ImageReport


class ImageReply(Reply, tag="image"):
    """Answer carrying one image (to `WarmImage` and `CommitSandbox`)."""

    image: ImageInfo


class PruneReply(Reply, tag="pruned"):
    """Answer to `PruneImages`."""

    result: PruneResult


class StatsReply(Reply, tag="stats_result"):
    """Answer to `ReadStats`."""

    stats: SandboxStats


class ForwardReply(Reply, tag="forwarded"):
    """Answer to `ForwardPort` once both directions of the connection have ended."""

    bytes_in: int  # bytes carried from the caller into the sandbox
    bytes_out: int  # bytes carried from the sandbox to the caller


# ---------------------------------------------------------------------------- timeouts and
# lifecycle events (idle timeout, hard lifetime, expiry policy, auto-delete; docs/lifecycle.md)

NO_LIMIT = math.inf
"""In `SetTimeouts` (and the SDK's `set_timeouts`): remove that limit. None there leaves it."""
EXPIRE_POLICIES = ("stop", "delete")


def as_limit(value: float | None) -> float | None:
    """A validated time limit as kept: seconds, or None for no limit (None or infinity)."""
    return None if value is None or value == math.inf else float(value)


class SandboxDeadlines(msgspec.Struct, kw_only=True):
    """A sandbox's timeouts as they stand now, and when each runs out (unix times; None: never).

    `idle_at` is when the idle timeout runs out if nothing uses the sandbox before; while a
    request naming it is in flight (`in_use`) it cannot run out. `lifetime_at` counts from the
    latest start, `delete_at` (auto-delete) from the latest stop.
    """

    idle_timeout: float | None = None
    lifetime: float | None = None
    on_expire: str = "stop"
    auto_delete_after: float | None = None
    started_at: float | None = None
    stopped_at: float | None = None  # set while it is stopped
    last_used: float | None = None  # None: not known here (another agent process tracks it)
    in_use: bool = False
    idle_at: float | None = None
    lifetime_at: float | None = None
    delete_at: float | None = None
    stop_cause: str = ""  # why it last stopped, where known: "idle", "lifetime", "request"


class SetTimeouts(Request, tag="timeouts"):
    """Change a sandbox's timeouts while it exists: None leaves a value, `NO_LIMIT` removes it."""

    sandbox_id: SandboxId
    idle_timeout: SecondsOrInf | None = None
    lifetime: SecondsOrInf | None = None
    on_expire: Literal["", "stop", "delete"] = ""  # "stop" | "delete"; empty leaves it
    auto_delete_after: SecondsOrInf | None = None


class Keepalive(Request, tag="keepalive"):
    """A use of the sandbox with nothing to do: its idle timeout runs again from now."""

    sandbox_id: SandboxId


class DeadlinesReply(Reply, tag="deadlines"):
    """Answer to `SetTimeouts` and `Keepalive`: the sandbox's deadlines now."""

    deadlines: SandboxDeadlines


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
    | ListImages
    | WarmImage
    | PruneImages
    | CommitSandbox
    | ReadStats
    | ForwardPort
    | SetTimeouts
    | Keepalive
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
    | ImageListReply
    | ImageReply
    | PruneReply
    | StatsReply
    | ForwardReply
    | DeadlinesReply
    | SandboxChanged
)

_encoder = msgspec.msgpack.Encoder(order="sorted")
_client_decoder = msgspec.msgpack.Decoder(ClientMessage)
_CLIENT_TAGS = frozenset(cls.__struct_config__.tag for cls in ClientMessage.__args__)
_agent_decoder = msgspec.msgpack.Decoder(AgentMessage)


def encode(message: Message) -> bytes:
    """Encode one message (the frame payload)."""
    return _encoder.encode(message)


def encode_value(value: msgspec.Struct) -> bytes:
    """Encode any protocol value deterministically (used for digests of specs)."""
    return _encoder.encode(value)


class Rejected(msgspec.Struct, frozen=True):
    """A frame from a client that holds no valid message: answer `error` on request `id`.

    `id` is 0 when the frame does not even say which request it is.
    """

    id: int
    error: RockError


class _Envelope(msgspec.Struct):
    """What every message has, decoded leniently to answer a request that fails to decode."""

    op: object = None
    id: object = None


_envelope_decoder = msgspec.msgpack.Decoder(_Envelope)


def decode_client_message(payload: bytes) -> ClientMessage | Rejected:
    """Decode a message sent by a client.

    A message that fails its schema is `Rejected` with a `BadRequest` on its own request id, so
    one bad request never costs the others on its connection; undecodable bytes are `Rejected`
    with a `ProtocolError` on id 0.
    """
    try:
        message: ClientMessage = _client_decoder.decode(payload)
        return message
    except msgspec.ValidationError as exc:
        try:
            envelope = _envelope_decoder.decode(payload)
        except msgspec.DecodeError:
            return Rejected(0, ProtocolError(f"undecodable message from client: {exc}"))
        op, request_id = envelope.op, envelope.id
        rid = request_id if type(request_id) is int and 0 < request_id < 1 << 63 else 0
        if not isinstance(op, str) or op not in _CLIENT_TAGS:
            return Rejected(rid, BadRequest(f"unknown request kind {op!r}"))
        return Rejected(rid, bad_request(exc, f"{op!r} request"))
    except msgspec.DecodeError as exc:
        return Rejected(0, ProtocolError(f"undecodable message from client: {exc}"))


def encode_request(message: Message) -> bytes:
    """Encode a message a client sends, checked against the schema as its agent will decode it.

    A value the agent would refuse raises `BadRequest` here, before anything is sent.
    """
    try:
        payload = _encoder.encode(message)
        _client_decoder.decode(payload)
    except (msgspec.ValidationError, msgspec.EncodeError, TypeError, UnicodeError) as exc:
        raise bad_request(exc, f"{message.__struct_config__.tag!r} request", message) from exc
    return payload


def decode_agent_message(payload: bytes) -> AgentMessage:
    """Decode a message sent by an agent; garbage raises `ProtocolError`."""
    try:
        message: AgentMessage = _agent_decoder.decode(payload)
        return message
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"undecodable message from agent: {exc}") from exc
