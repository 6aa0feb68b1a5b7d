"""Hostile protocol input for the fuzz test and the reliability benchmark.

`hostile_session()` draws one connection's worth of bytes: sometimes a broken handshake, then
frames of messages with wrong types, unknown tags, NaN, infinities, negative and huge numbers,
NUL bytes, path traversal, garbage bytes, cut-off frames. Messages name real sandboxes as
often as made-up ones, so a fuzzed request that happens to be valid does real work.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import msgspec
from hypothesis import strategies as st

from rock_core import _protocol as p
from rock_core._framing import frame

CLIENT_TAGS = sorted(p._CLIENT_TAGS - {"hello"})
FIELDS: dict[str, list[str]] = {
    cls.__struct_config__.tag: list(cls.__struct_fields__) for cls in p.ClientMessage.__args__
}

NUMBERS = st.one_of(
    st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1),
    st.sampled_from([0, -1, 1, 1 << 62, -(1 << 63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e-300, 1e300]),
)
TEXTS = st.one_of(
    st.text(max_size=24),
    st.sampled_from(
        [
            "",
            "\x00",
            "../../etc/passwd",
            "x/../other",
            "/proc/self/mem",
            "/sys/kernel",
            "/",
            "a" * 5000,
            "(a+)+$",
            "$(reboot)",
            "`id`",
            "\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
        ]
    ),
)
LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, TEXTS, st.binary(max_size=32))
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXTS, inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def message(draw: st.DrawFn, sandbox_ids: list[str]) -> dict[str, Any]:
    """One client message as builtins: a real tag with hostile fields, or worse."""
    tag = draw(st.one_of(st.sampled_from(CLIENT_TAGS), TEXTS, st.just(None)))
    body: dict[str, Any] = {"op": tag}
    if draw(st.booleans()):
        body["id"] = draw(st.one_of(st.integers(min_value=1, max_value=50), NUMBERS, TEXTS))
    else:
        body["id"] = draw(st.integers(min_value=1, max_value=1 << 20))
    for name in FIELDS.get(tag, []) if isinstance(tag, str) else []:
        if name in ("id",):
            continue
        if name == "sandbox_id" and draw(st.booleans()):
            body[name] = draw(st.sampled_from(sandbox_ids))
        elif name == "session" and draw(st.booleans()):
            body[name] = "main"
        elif draw(st.integers(0, 4)) > 0:
            body[name] = draw(VALUES)
    if draw(st.integers(0, 9)) == 0:
        body[draw(TEXTS)] = draw(VALUES)
    return body


def _encoded(body: dict[str, Any]) -> bytes:
    try:
        return msgspec.msgpack.encode(body)
    except (TypeError, msgspec.EncodeError):
        return msgspec.msgpack.encode({k: repr(v) for k, v in body.items()})


@st.composite
def hostile_session(draw: st.DrawFn, owner: str, sandbox_ids: list[str]) -> bytes:
    """The bytes one fuzzing client sends on one connection."""
    out = bytearray()
    opening = draw(st.integers(0, 9))
    if opening == 0:
        out += frame(_encoded(draw(message(sandbox_ids))))  # no hello first
    elif opening == 1:
        out += frame(draw(st.binary(max_size=64)))
    else:
        hello = {"op": "hello", "protocol": p.PROTOCOL_VERSION, "client": "fuzz", "owner": owner}
        if opening == 2:
            # Not "admin": root's administrator may act on every sandbox, the bystander's too.
            hello[draw(st.sampled_from(["protocol", "owner", "lease", "accepts"]))] = draw(VALUES)
        out += frame(_encoded(hello))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            out += frame(draw(st.binary(max_size=128)))
        elif kind == 1:
            out += struct.pack(">I", draw(st.integers(0, (1 << 32) - 1)))  # a lying length
            break
        else:
            out += frame(_encoded(draw(message(sandbox_ids))))
    return bytes(out)


__all__ = ["hostile_session"]
