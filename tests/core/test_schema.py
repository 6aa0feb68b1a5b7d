"""The schema owns validation: every constraint of a wire value, checked the same everywhere."""

from __future__ import annotations

import math

import msgspec
import pytest

from rock_core import BadRequest, ProtocolError
from rock_core import _protocol as p
from rock_core._schema import validate


def rejected(message: p.Message) -> p.Rejected:
    decoded = p.decode_client_message(p.encode(message))
    assert isinstance(decoded, p.Rejected), decoded
    return decoded


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"idle_timeout": 0}, r"idle_timeout(?: .*?)?: Expected `float` > 0.0$"),
        ({"lifetime": -1}, r"lifetime(?: .*?)?: Expected `float` > 0.0$"),
        ({"auto_delete_after": math.nan}, r"auto_delete_after(?: .*?)?: Expected `float` > 0.0$"),
        ({"on_expire": "explode"}, r"on_expire .explode.: Invalid enum value .explode.$"),
    ],
)
def test_bad_timeout_changes_are_refused_by_the_schema(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    request = p.SetTimeouts(id=4, sandbox_id="sb", **kwargs)
    with pytest.raises(BadRequest, match=message):
        p.encode_request(request)
    answer = rejected(request)
    assert answer.id == 4 and isinstance(answer.error, BadRequest)
    assert answer.error.message.startswith("invalid 'timeouts' request: ")


def test_infinity_removes_a_limit_but_is_no_time_limit_elsewhere() -> None:
    p.encode_request(p.SetTimeouts(id=1, sandbox_id="sb", lifetime=math.inf))
    with pytest.raises(BadRequest, match=r"lifetime(?: .*?)?: Expected `float` <= "):
        validate({"image": "i", "lifetime": math.inf}, p.SandboxSpec)
    assert p.as_limit(math.inf) is None and p.as_limit(3) == 3.0 and p.as_limit(None) is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cpus": math.nan}, r"cpus(?: .*?)?: Expected `float` >= 0.01$"),
        ({"cpus": math.inf}, r"cpus(?: .*?)?: Expected `float` <= 4096.0$"),
        ({"cpus": 1e-9}, r"cpus(?: .*?)?: Expected `float` >= 0.01$"),
        ({"cpus": "2"}, r"cpus(?: .*?)?: Expected `float`, got `str`$"),
        ({"memory": 1 << 20}, r"memory(?: .*?)?: Expected `int` >= 6291456$"),
        ({"pids": 0}, r"pids(?: .*?)?: Expected `int` >= 1$"),
        ({"pids": "12"}, r"pids(?: .*?)?: Expected `int`, got `str`$"),
        ({"env": {"A": 1}}, r"env\[\.\.\.\](?: .*?)?: Expected `str`, got `int`$"),
        ({"env": {"A=B": "1"}}, r"env \(a key\): must be a non-empty name with no '='"),
        ({"env": {"A": "x\x00y"}}, r"env\[\.\.\.\](?: .*?)?: must be text with no NUL byte$"),
        ({"labels": None}, r"labels(?: .*?)?: Expected `object`, got `None`$"),
        ({"labels": {"a=b": "me"}}, r"labels \(a key\): must be 1 to 128 characters with no '='"),
        ({"workdir": "rel"}, r"workdir(?: .*?)?: must be empty or an absolute path"),
        ({"pull": "sometimes"}, r"pull(?: .*?)?: Invalid enum value 'sometimes'$"),
        ({"disk": "lots"}, r"disk(?: .*?)?: must be empty or a size such as '10G'"),
        ({"image": "a b"}, r"image(?: .*?)?: must be an image reference"),
    ],
)
def test_spec_constraints(values: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(BadRequest, match=r"^invalid sandbox spec: " + message):
        validate({"image": "python:3.11", **values}, p.SandboxSpec, "sandbox spec")


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            p.InspectSandbox(id=1, sandbox_id="x/../other"),
            r"sandbox_id(?: .*?)?: must be 1 to 100 letters",
        ),
        (
            p.ReadFile(id=1, sandbox_id="x", path="etc/passwd"),
            r"path(?: .*?)?: must be an absolute path",
        ),
        (
            p.WriteFile(id=1, sandbox_id="x", path="/f", data=b"", mode=-1),
            r"mode(?: .*?)?: Expected `int` >= 0",
        ),
        (
            p.RunCommand(id=1, sandbox_id="x", session="s", command=b"ls"),
            r"command(?: .*?)?: Expected `str`, got `bytes`",
        ),  # type: ignore[arg-type]
        (
            p.RunCommand(id=1, sandbox_id="x", session="s", command="ls", timeout="5"),
            r"timeout(?: .*?)?: Expected `float \| null`, got `str`",
        ),  # type: ignore[arg-type]
        (
            p.RunCommand(id=1, sandbox_id="x", session="../s", command="ls"),
            r"session(?: .*?)?: must be 1 to 128",
        ),
        (
            p.Execute(id=1, sandbox_id="x", argv=[123]),
            r"argv\[0\](?: .*?)?: Expected `str`, got `int`",
        ),  # type: ignore[list-item]
        (
            p.Execute(id=1, sandbox_id="x", argv=[]),
            r"argv(?: .*?)?: Expected `array` of length >= 1",
        ),
        (
            p.Execute(id=1, sandbox_id="x", argv=["ls"], cwd="tmp"),
            r"cwd(?: .*?)?: must be empty or an absolute path",
        ),
        (
            p.Execute(id=1, sandbox_id="x", argv=["ls"], env={"A": "\x00"}),
            r"env\[\.\.\.\](?: .*?)?: must be text",
        ),
        (
            p.Expect(id=1, sandbox_id="x", session="s", patterns=[]),
            r"patterns(?: .*?)?: Expected `array` of length >= 1",
        ),
        (p.ForwardPort(id=1, sandbox_id="x", port=0), r"port(?: .*?)?: Expected `int` >= 1"),
    ],
)
def test_request_constraints_on_both_sides(request_: p.Request, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        p.encode_request(request_)
    answer = rejected(request_)
    assert answer.id == 1 and isinstance(answer.error, BadRequest)
    assert answer.error.message.startswith(f"invalid {request_.__struct_config__.tag!r} request: ")


def test_text_that_is_not_unicode_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match=r"text must be valid Unicode"):
        p.encode_request(p.RunCommand(id=1, sandbox_id="x", session="s", command="\udcff"))


def test_frames_that_hold_no_message_are_rejected_on_their_id() -> None:
    unknown = p.decode_client_message(msgspec.msgpack.encode({"op": "format_disk", "id": 7}))
    assert unknown == p.Rejected(7, unknown.error) and isinstance(unknown.error, BadRequest)  # type: ignore[union-attr]
    assert unknown.error.message == "unknown request kind 'format_disk'"  # type: ignore[union-attr]
    no_id = p.decode_client_message(msgspec.msgpack.encode({"op": "ping", "id": -3}))
    assert isinstance(no_id, p.Rejected) and no_id.id == 0
    garbage = p.decode_client_message(b"\xc1")
    assert isinstance(garbage, p.Rejected) and garbage.id == 0
    assert isinstance(garbage.error, ProtocolError)
    not_a_map = p.decode_client_message(msgspec.msgpack.encode([1, 2]))
    assert isinstance(not_a_map, p.Rejected) and isinstance(
        not_a_map.error, BadRequest | ProtocolError
    )
