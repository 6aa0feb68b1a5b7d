"""The wire codec: every message round-trips, garbage is a `ProtocolError`, old bytes decode."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from rock_core import BadRequest, ProtocolError
from rock_core import _messages_checkpoint as ck
from rock_core import _protocol as p
from tests.core.fixtures.make_protocol_v1 import MESSAGES

FIXTURE = Path(__file__).parent / "fixtures" / "protocol_v1.msgpack"

CLIENT_CLASSES: tuple[type[p.Message], ...] = typing.get_args(p.ClientMessage)
AGENT_CLASSES: tuple[type[p.Message], ...] = typing.get_args(p.AgentMessage)

# The tags of protocol v1 and the class each meant. Tags never change meaning: this table is
# only ever extended, never edited.
V1_TAGS = {
    "hello": "Hello",
    "welcome": "Welcome",
    "ping": "Ping",
    "create": "CreateSandbox",
    "stop": "StopSandbox",
    "start": "StartSandbox",
    "remove": "RemoveSandbox",
    "inspect": "InspectSandbox",
    "list": "ListSandboxes",
    "session_create": "CreateSession",
    "session_close": "CloseSession",
    "run": "RunCommand",
    "send": "SendInput",
    "expect": "Expect",
    "wait": "WaitCommand",
    "interrupt": "Interrupt",
    "exec": "Execute",
    "read": "ReadFile",
    "write": "WriteFile",
    "upload": "Upload",
    "download": "Download",
    "cancel": "Cancel",
    "output": "Output",
    "data": "StreamData",
    "credit": "StreamCredit",
    "pong": "Pong",
    "done": "Done",
    "sandbox": "SandboxReply",
    "sandboxes": "SandboxListReply",
    "result": "CommandReply",
    "expected": "ExpectReply",
    "exec_result": "ExecReply",
    "file": "FileReply",
    "transferred": "TransferReply",
    "error": "ErrorReply",
    # Images, commit, stats and ports.
    "images_list": "ListImages",
    "image_warm": "WarmImage",
    "images_prune": "PruneImages",
    "commit": "CommitSandbox",
    "stats": "ReadStats",
    "forward": "ForwardPort",
    "images": "ImageListReply",
    "image": "ImageReply",
    "pruned": "PruneReply",
    "stats_result": "StatsReply",
    "forwarded": "ForwardReply",
    # Timeouts and lifecycle events.
    "timeouts": "SetTimeouts",
    "keepalive": "Keepalive",
    "deadlines": "DeadlinesReply",
    "changed": "SandboxChanged",
    # Host ports reached from inside a sandbox.
    "listen": "ListenPort",
    "listening": "Listening",
    "accepted": "Accepted",
    "claim": "ClaimConnection",
    # Image builds.
    "image_build": "BuildImage",
    "built": "BuildReply",
    # Logs of a sandbox's main process.
    "logs": "ReadLogs",
    "log_data": "LogData",
    # Streamed one-off commands.
    "exec_stream": "ExecuteStreamed",
    "exec_output": "ProcessOutput",
    # Metrics.
    "metrics": "ReadMetrics",
    "metrics_result": "MetricsReply",
    # The live view.
    "host_view": "ReadHostView",
    "core_report": "CoreReport",
    "host_view_result": "HostViewReply",
    # Pause and resume.
    "pause": "PauseSandbox",
    "resume": "ResumeSandbox",
    # Terminals.
    "terminal": "OpenTerminal",
    "terminal_resize": "ResizeTerminal",
    "terminal_exit": "TerminalReply",
    # Checkpoints.
    "checkpoint": "CheckpointSandbox",
    "checkpoints_list": "ListCheckpoints",
    "checkpoint_remove": "RemoveCheckpoint",
    "checkpoint_export": "ExportCheckpoint",
    "checkpoint_import": "ImportCheckpoint",
    "checkpoint_info": "CheckpointReply",
    "checkpoints": "CheckpointListReply",
    "read_ends": "ReadEnds",
    "ends": "EndsReply",
}


def _tag(cls: type[p.Message]) -> str:
    tag = msgspec.inspect.type_info(cls).tag  # type: ignore[attr-defined]
    assert isinstance(tag, str)
    return tag


def _decoders(cls: type[p.Message]) -> list[Any]:
    decoders: list[Any] = []
    if cls in CLIENT_CLASSES:
        decoders.append(p.decode_client_message)
    if cls in AGENT_CLASSES:
        decoders.append(p.decode_agent_message)
    return decoders


def _ids(message: p.Message) -> str:
    return type(message).__name__


def test_examples_cover_every_message_class() -> None:
    assert {type(m) for m in MESSAGES} == set(CLIENT_CLASSES) | set(AGENT_CLASSES)
    assert len(MESSAGES) == len({type(m) for m in MESSAGES})


@pytest.mark.parametrize("message", MESSAGES, ids=_ids)
def test_every_message_round_trips_on_each_side_that_receives_it(message: p.Message) -> None:
    decoders = _decoders(type(message))
    assert decoders
    for decode in decoders:
        decoded = decode(p.encode(message))
        assert type(decoded) is type(message)
        assert decoded == message


ONE_SIDED = [m for m in MESSAGES if (type(m) in CLIENT_CLASSES) != (type(m) in AGENT_CLASSES)]


def client_rejects(payload: bytes) -> p.Rejected:
    """What the agent's decoder makes of a frame that holds no valid client message."""
    decoded = p.decode_client_message(payload)
    assert isinstance(decoded, p.Rejected), decoded
    return decoded


@pytest.mark.parametrize("message", ONE_SIDED, ids=_ids)
def test_messages_are_refused_by_the_side_that_never_receives_them(message: p.Message) -> None:
    cls = type(message)
    if cls in CLIENT_CLASSES:
        with pytest.raises(ProtocolError, match=f"^undecodable message from agent: .*{_tag(cls)}"):
            p.decode_agent_message(p.encode(message))
        return
    # An agent answers a client's wrong message on its own request id and keeps the link.
    rejected = client_rejects(p.encode(message))
    assert rejected.id == getattr(message, "id", 0)
    assert isinstance(rejected.error, BadRequest)
    assert rejected.error.message == f"unknown request kind {_tag(cls)!r}"


def test_encoding_is_deterministic() -> None:
    spec_a = p.SandboxSpec(image="i", env={"b": "2", "a": "1"})
    spec_b = p.SandboxSpec(image="i", env={"a": "1", "b": "2"})
    assert p.encode_value(spec_a) == p.encode_value(spec_b)


@pytest.mark.parametrize("garbage", [b"", b"\xc1", b"not msgpack at all", b"\x92\x01\x02"])
def test_garbage_is_a_protocol_error(garbage: bytes) -> None:
    with pytest.raises(ProtocolError, match=r"^undecodable message from agent: ") as info:
        p.decode_agent_message(garbage)
    assert isinstance(info.value.__cause__, msgspec.DecodeError)
    rejected = client_rejects(garbage)
    assert rejected.id == 0 and isinstance(rejected.error, ProtocolError)
    assert rejected.error.message.startswith("undecodable message from client: ")


def test_unknown_tag_is_refused_naming_it() -> None:
    payload = msgspec.msgpack.encode({"op": "teleport", "id": 1})
    assert client_rejects(payload).error.message == "unknown request kind 'teleport'"
    with pytest.raises(ProtocolError, match=r"^undecodable message from agent: .*teleport"):
        p.decode_agent_message(payload)


def test_missing_tag_or_required_field_is_a_bad_request_on_its_id() -> None:
    no_tag = client_rejects(msgspec.msgpack.encode({"id": 1}))
    assert (no_tag.id, no_tag.error.message) == (1, "unknown request kind None")
    no_field = client_rejects(msgspec.msgpack.encode({"op": "stop", "id": 1}))
    assert no_field.id == 1 and isinstance(no_field.error, BadRequest)
    assert "sandbox_id" in no_field.error.message


@pytest.mark.parametrize("message", MESSAGES, ids=_ids)
def test_messages_without_optional_fields_decode_with_defaults(message: p.Message) -> None:
    """An older peer leaves out fields added later; a newer peer adds fields we ignore.

    A request's `id` has a default only for the connection to fill in: it is always sent.
    """
    cls = type(message)
    fields = msgspec.structs.fields(cls)
    sent = {f.name for f in fields if f.required or (f.name == "id" and issubclass(cls, p.Request))}
    old: dict[str, Any] = {
        f.encode_name: msgspec.to_builtins(getattr(message, f.name), builtin_types=(bytes,))
        for f in fields
        if f.name in sent
    }
    old["op"] = _tag(cls)
    old["field_from_the_future"] = [1, 2, 3]
    for decode in _decoders(cls):
        decoded = decode(msgspec.msgpack.encode(old))
        assert type(decoded) is cls
        for f in fields:
            value = getattr(decoded, f.name)
            if f.name in sent:
                assert value == getattr(message, f.name), f.name
            elif f.default_factory is not msgspec.NODEFAULT:
                assert value == f.default_factory(), f.name
            else:
                assert value == f.default, f.name


def test_nested_spec_without_newer_fields_decodes_with_defaults() -> None:
    payload = msgspec.msgpack.encode(
        {"op": "create", "id": 1, "sandbox_id": "sb", "spec": {"image": "python:3.11"}}
    )
    message = p.decode_client_message(payload)
    assert message == p.CreateSandbox(
        id=1, sandbox_id="sb", spec=p.SandboxSpec(image="python:3.11")
    )


def _sent_fields(decoded: object, sent: object) -> object:
    """`decoded` cut down to the fields the old peer sent (new fields have defaults)."""
    if isinstance(decoded, dict) and isinstance(sent, dict):
        return {k: _sent_fields(decoded[k], v) for k, v in sent.items() if k in decoded}
    if isinstance(decoded, list) and isinstance(sent, list) and len(decoded) == len(sent):
        return [_sent_fields(d, v) for d, v in zip(decoded, sent, strict=True)]
    return decoded


def _fixture() -> list[bytes]:
    payloads = msgspec.msgpack.decode(FIXTURE.read_bytes(), type=list[bytes])
    assert payloads, "the v1 fixture is empty"
    return payloads


def test_v1_fixture_holds_one_message_per_v1_class() -> None:
    tags = [msgspec.msgpack.decode(payload)["op"] for payload in _fixture()]
    assert sorted(tags) == sorted(V1_TAGS)


@pytest.mark.parametrize("index", range(len(V1_TAGS)))
def test_v1_messages_still_decode(index: int) -> None:
    payload = _fixture()[index]
    raw = msgspec.msgpack.decode(payload)
    expected = V1_TAGS[raw["op"]]
    cls = getattr(p, expected, None) or getattr(ck, expected)
    decoders = _decoders(cls)
    assert decoders, f"{expected} is no longer in either message union"
    for decode in decoders:
        message = decode(payload)
        assert type(message).__name__ == expected
        # Every field the v1 peer sent still means the same value.
        decoded = msgspec.to_builtins(message, builtin_types=(bytes,))
        for key, value in raw.items():
            assert _sent_fields(decoded[key], value) == value, (expected, key)
