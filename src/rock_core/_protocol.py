"""Every message between the core and an agent, as msgspec tagged unions, and their codec.

Rules:
- A connection carries frames (see `_framing`); each frame holds exactly one message.
- The client (core) opens with `Hello`; the agent answers `Welcome` or `ErrorReply`. The
  protocol version must match exactly; a mismatch is a `ProtocolError` naming both versions.
- Every request carries an `id` unique on its connection, assigned by the connection that sends
  it. The agent answers each request with exactly one final message carrying the same `id`: a
  `*Reply` or an `ErrorReply`. Before it, a request may produce any number of `Output` /
  `StreamData` events with that id.
- The agent sends a message unasked (id 0, `SandboxChanged`) only to a client that listed its
  tag in `Hello.accepts`, so older clients never receive a message they cannot decode.
- Byte streams (uploads, downloads) use credit flow control: the receiver grants `StreamCredit`
  and the sender never has more than the granted chunks in flight, so a 200 MB file is never
  held whole in memory on either side and one transfer never blocks the others.
- Schema evolution: new fields get defaults, tags never change meaning; encoded fixtures of old
  messages are kept in the tests and must still decode.
- The messages are defined by family (`_messages`: handshake, sandboxes, sessions, files,
  streams, replies; `_messages_host`: images, commit, stats, ports, host ports, timeouts;
  `_messages_logs`: container logs, `_messages_process`: streamed one-off commands,
  `_messages_metrics`: metrics, `_messages_top`: the live view, `_messages_pause`: pause and
  resume, `_messages_checkpoint`: checkpoints) over the values of `_values`; this module joins
  them into the two unions and encodes and decodes them. Every name is re-exported here, and
  publicly in `rock_core.protocol` (the checkpoint names from their own module).
"""

from __future__ import annotations

import msgspec

from . import _messages_checkpoint as _ck
from ._errors import BadRequest, ProtocolError, RockError
from ._messages import (
    PROTOCOL_VERSION,
    SHARED_ADMISSION,
    Cancel,
    CloseSession,
    CommandReply,
    CreateSandbox,
    CreateSession,
    Done,
    Download,
    ErrorReply,
    ExecReply,
    Execute,
    Expect,
    ExpectReply,
    FileReply,
    Hello,
    InspectSandbox,
    Interrupt,
    ListSandboxes,
    Message,
    Output,
    Ping,
    Pong,
    ReadFile,
    RemoveSandbox,
    Reply,
    Request,
    RunCommand,
    SandboxChanged,
    SandboxListReply,
    SandboxReply,
    SendInput,
    StartSandbox,
    StopSandbox,
    StreamCredit,
    StreamData,
    TransferReply,
    Upload,
    WaitCommand,
    Welcome,
    WriteFile,
    check_held_output,
)
from ._messages_events import EndsReply, ReadEnds, SandboxEnd
from ._messages_host import (
    Accepted,
    BuildImage,
    BuildReply,
    ClaimConnection,
    CommitSandbox,
    DeadlinesReply,
    ForwardPort,
    ForwardReply,
    ImageListReply,
    ImageReply,
    Keepalive,
    Listening,
    ListenPort,
    ListImages,
    PruneImages,
    PruneReply,
    ReadStats,
    SetTimeouts,
    StatsReply,
    WarmImage,
)
from ._messages_logs import LOG_CHUNK, LogData, ReadLogs
from ._messages_metrics import MetricsReply, ReadMetrics
from ._messages_pause import PauseSandbox, ResumeSandbox
from ._messages_process import EXEC_STREAM, OUTPUT_CHUNK, ExecuteStreamed, ProcessOutput
from ._messages_term import MAX_TERMINAL_SIDE, OpenTerminal, ResizeTerminal, TerminalReply
from ._messages_top import (
    CoreReport,
    CoreView,
    HostView,
    HostViewReply,
    PoolView,
    ReadHostView,
    SandboxView,
)
from ._schema import bad_request
from ._values import (
    EXPIRE_POLICIES,
    NO_LIMIT,
    CommandResult,
    ExecResult,
    FileStat,
    ImageInfo,
    ImageReport,
    PruneResult,
    SandboxDeadlines,
    SandboxInfo,
    SandboxSpec,
    SandboxStats,
    as_limit,
)

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
    | BuildImage
    | ReadStats
    | ForwardPort
    | ListenPort
    | ClaimConnection
    | SetTimeouts
    | Keepalive
    | ReadLogs
    | ExecuteStreamed
    | ReadMetrics
    | ReadHostView
    | CoreReport
    | PauseSandbox
    | ResumeSandbox
    | OpenTerminal
    | ResizeTerminal
    | _ck.CheckpointSandbox
    | _ck.ListCheckpoints
    | _ck.RemoveCheckpoint
    | _ck.ExportCheckpoint
    | _ck.ImportCheckpoint
    | ReadEnds
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
    | BuildReply
    | PruneReply
    | StatsReply
    | ForwardReply
    | Listening
    | Accepted
    | DeadlinesReply
    | SandboxChanged
    | LogData
    | ProcessOutput
    | MetricsReply
    | HostViewReply
    | TerminalReply
    | _ck.CheckpointReply
    | _ck.CheckpointListReply
    | EndsReply
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


def decode_client_message(payload: bytes | memoryview) -> ClientMessage | Rejected:
    """Decode a message sent by a client.

    A message that fails its schema is `Rejected` with a `BadRequest` on its own request id, so
    one bad request never costs the others on its connection; undecodable bytes are `Rejected`
    with a `ProtocolError` on id 0.
    """
    try:
        message: ClientMessage = _client_decoder.decode(payload)
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
    if isinstance(message, Request) and message.id == 0:
        # `id` has a default only so that call sites may leave it to the connection; a
        # request must still carry one on the wire.
        missing = msgspec.ValidationError("Object missing required field `id`")
        return Rejected(0, bad_request(missing, f"{message.__struct_config__.tag!r} request"))
    return message


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


def decode_agent_message(payload: bytes | memoryview) -> AgentMessage:
    """Decode a message sent by an agent; garbage raises `ProtocolError`."""
    try:
        message: AgentMessage = _agent_decoder.decode(payload)
        return message
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"undecodable message from agent: {exc}") from exc


__all__ = [
    "EXEC_STREAM",
    "EXPIRE_POLICIES",
    "LOG_CHUNK",
    "MAX_TERMINAL_SIDE",
    "NO_LIMIT",
    "OUTPUT_CHUNK",
    "PROTOCOL_VERSION",
    "SHARED_ADMISSION",
    "Accepted",
    "AgentMessage",
    "BuildImage",
    "BuildReply",
    "Cancel",
    "ClaimConnection",
    "ClientMessage",
    "CloseSession",
    "CommandReply",
    "CommandResult",
    "CommitSandbox",
    "CoreReport",
    "CoreView",
    "CreateSandbox",
    "CreateSession",
    "DeadlinesReply",
    "Done",
    "Download",
    "EndsReply",
    "ErrorReply",
    "ExecReply",
    "ExecResult",
    "Execute",
    "ExecuteStreamed",
    "Expect",
    "ExpectReply",
    "FileReply",
    "FileStat",
    "ForwardPort",
    "ForwardReply",
    "Hello",
    "HostView",
    "HostViewReply",
    "ImageInfo",
    "ImageListReply",
    "ImageReply",
    "ImageReport",
    "InspectSandbox",
    "Interrupt",
    "Keepalive",
    "ListImages",
    "ListSandboxes",
    "ListenPort",
    "Listening",
    "LogData",
    "Message",
    "MetricsReply",
    "OpenTerminal",
    "Output",
    "PauseSandbox",
    "Ping",
    "Pong",
    "PoolView",
    "ProcessOutput",
    "PruneImages",
    "PruneReply",
    "PruneResult",
    "ReadEnds",
    "ReadFile",
    "ReadHostView",
    "ReadLogs",
    "ReadMetrics",
    "ReadStats",
    "Rejected",
    "RemoveSandbox",
    "Reply",
    "Request",
    "ResizeTerminal",
    "ResumeSandbox",
    "RunCommand",
    "SandboxChanged",
    "SandboxDeadlines",
    "SandboxEnd",
    "SandboxInfo",
    "SandboxListReply",
    "SandboxReply",
    "SandboxSpec",
    "SandboxStats",
    "SandboxView",
    "SendInput",
    "SetTimeouts",
    "StartSandbox",
    "StatsReply",
    "StopSandbox",
    "StreamCredit",
    "StreamData",
    "TerminalReply",
    "TransferReply",
    "Upload",
    "WaitCommand",
    "WarmImage",
    "Welcome",
    "WriteFile",
    "as_limit",
    "check_held_output",
    "decode_agent_message",
    "decode_client_message",
    "encode",
    "encode_request",
    "encode_value",
]
