"""Checks of the SDK's own arguments: the ones that never reach the wire as they are given.

Rules:
- What goes on the wire is checked by the schema (`rock_core._protocol.encode_request`) before
  it is sent; only what the SDK turns into something else first (data into bytes, a path into
  a local file, a callback, a flag, a count) is checked here.
- Every refusal is a `BadRequest` naming the argument, what it must be, and the value given;
  none reaches the wire, so the link and the sandbox are untouched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from rock_core import BadRequest

T = TypeVar("T")


def flag(value: object, what: str) -> bool:
    """`value` as a bool: True or False, nothing else."""
    if not isinstance(value, bool):
        raise BadRequest(f"{what} must be True or False, got {value!r}")
    return value


def callback(value: T | None, what: str, takes: str) -> T | None:
    """`value` if it is None or callable (`takes` says what it is called with)."""
    if value is not None and not callable(value):
        raise BadRequest(f"{what} must be a callable taking {takes}, or None, got {value!r}")
    return value


def count(value: object, what: str, minimum: int, maximum: int | None = None) -> int:
    """`value` as an int (never a bool) between `minimum` and `maximum`."""
    bad = isinstance(value, bool) or not isinstance(value, int) or value < minimum
    if not bad and maximum is not None and isinstance(value, int) and value > maximum:
        bad = True
    if bad:
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise BadRequest(f"{what} must be a whole number {bounds}, got {value!r}")
    assert isinstance(value, int)
    return value


def text(value: object, what: str) -> str:
    """`value` if it is a str."""
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a str, got {value!r}")
    return value


def data(value: object, what: str = "data") -> bytes:
    """File contents: bytes-like, or str (written as UTF-8)."""
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadRequest(f"{what} must be valid Unicode text (UTF-8): {exc}") from None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    hint = ": to copy a local file, use upload()" if isinstance(value, os.PathLike) else ""
    raise BadRequest(f"{what} must be bytes or str, got {value!r}{hint}")


def env(value: Mapping[str, str] | None, what: str = "env") -> dict[str, str]:
    """Environment variables: None (none) or a mapping (its names and values are checked on
    the wire)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequest(f"{what} must be a dict of names to values, got {value!r}")
    return dict(value)


def strings(value: object, what: str, example: str) -> list[Any]:
    """A sequence given as a list (never one str, bytes or None); its items are checked on the
    wire. `example` shows what to pass."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise BadRequest(f"{what} must be a list such as {example}, got {value!r}")
    return list(value)


def encoding(name: object) -> str:
    """A text encoding Python knows."""
    import codecs

    try:
        return codecs.lookup(text(name, "encoding")).name
    except LookupError:
        raise BadRequest(f"unknown encoding {name!r}") from None


def decode(raw: bytes, codec: str, where: str) -> str:
    """`raw` as text, or `BadRequest` saying the file is not text in that encoding."""
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"{where} is not {codec} text ({exc.reason} at byte {exc.start});"
            " read_file() returns its bytes"
        ) from None


__all__ = [
    "callback",
    "count",
    "data",
    "decode",
    "encoding",
    "env",
    "flag",
    "strings",
    "text",
]
