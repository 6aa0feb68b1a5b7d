"""The in-sandbox environment server: one environment, driven by JSON lines on stdin.

`RemoteEnv` uploads this package's game code into a sandbox and starts this server in a
session (``python3 -u -c "...; main()"``); the server builds one environment and answers one
request line with one reply line. Standard library only: it runs on the image's bare python3.

Wire format (UTF-8, one JSON object per line, ASCII-escaped so no line holds a raw newline):
- request ``{"op": "make", "entry_point": "module:Name", "kwargs": {...}}`` first, then any
  number of ``{"op": "reset", "seed": int|null, "options": {...}|null}`` and
  ``{"op": "step", "action": str}``, and finally ``{"op": "close"}``, after which the server
  exits (it also exits at end of input).
- every request may carry an ``"id"``, echoed in its reply.
- reply: `REPLY_PREFIX` then ``{"ok": true, "id": ..., "result": ...}`` (make and close:
  null; reset: ``[obs, info]``; step: ``[obs, reward, terminated, truncated, info]``) or
  ``{"ok": false, "id": ..., "code": ..., "message": ..., "traceback": ...}``, where
  ``code`` is the `RockError` code of the exception (``rock_error`` for any other exception
  type). A failure before any request is read (a Python too old) has no id. The prefix
  starts with an ASCII record separator so a reply can never be confused with what the
  environment itself prints (the server points ``sys.stdout`` at stderr, and both reach the
  same stream).
- Values that JSON cannot hold in an info dict are sent as their ``repr``. A result that
  still cannot be encoded (a key that is not a string, number or null; a value that contains
  itself) is answered with a ``rock_error`` naming why, and the server goes on serving.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from typing import Any, TextIO

__all__ = ["REPLY_PATTERN", "REPLY_PREFIX", "main", "serve"]

#: What starts every reply line.
REPLY_PREFIX = "\x1erock-env "

#: A regular expression matching one whole reply line (for `InteractiveProcess.expect`).
REPLY_PATTERN = "\x1erock-env [^\\n]*\\n"

#: Oldest Python the game code runs on (dataclass slots, ``X | Y`` unions at runtime).
MIN_PYTHON = (3, 10)


class _Failure(Exception):
    """A request the server refuses; carries a `RockError` code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _build(entry_point: str, kwargs: dict[str, Any]) -> Any:
    module_name, _, attribute = entry_point.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise _Failure(
            "not_found", f"cannot import entry point {entry_point!r} in the sandbox: {exc}"
        ) from exc
    return factory(**kwargs)


def _encode(payload: dict[str, Any]) -> str:
    return REPLY_PREFIX + json.dumps(payload, default=repr) + "\n"


def _write(out: TextIO, line: str) -> None:
    out.write(line)
    out.flush()


def _reply(out: TextIO, payload: dict[str, Any]) -> None:
    _write(out, _encode(payload))


def _encode_result(op: Any, number: Any, result: Any) -> str:
    try:
        return _encode({"ok": True, "id": number, "result": result})
    except (TypeError, ValueError, RecursionError) as exc:
        raise _Failure(
            "rock_error", f"the environment's {op} result cannot be sent as JSON: {exc}"
        ) from exc


def _error(exc: BaseException) -> dict[str, Any]:
    code = getattr(exc, "code", None)
    if not isinstance(code, str) or not isinstance(exc, Exception):
        code = "rock_error"
    message = str(exc)
    if code == "rock_error" and not isinstance(exc, _Failure):
        message = f"the environment raised {type(exc).__name__}: {exc}"
    return {"ok": False, "code": code, "message": message, "traceback": traceback.format_exc()}


def serve(requests: TextIO, out: TextIO) -> None:
    """Answer requests until ``close`` or the end of `requests`."""
    env: Any = None
    for line in requests:
        if not line.strip():
            continue
        number = None
        try:
            request = json.loads(line)
            number = request.get("id")
            op = request.get("op")
            if op == "make":
                env = _build(request["entry_point"], request.get("kwargs") or {})
                result: Any = None
            elif op == "close":
                if env is not None:
                    env.close()
                _reply(out, {"ok": True, "id": number, "result": None})
                return
            elif env is None:
                raise _Failure("bad_request", f"{op!r} before make")
            elif op == "reset":
                result = list(env.reset(request.get("seed"), options=request.get("options")))
            elif op == "step":
                result = list(env.step(request["action"]))
            else:
                raise _Failure("bad_request", f"unknown op {op!r}")
            reply = _encode_result(op, number, result)
        except Exception as exc:
            reply = _encode({**_error(exc), "id": number})
        _write(out, reply)


def main() -> None:
    """Serve on stdin/stdout; whatever the environment prints goes to stderr."""
    out = sys.stdout
    sys.stdout = sys.stderr
    if sys.version_info < MIN_PYTHON:
        _reply(
            out,
            _error(
                _Failure(
                    "sandbox_failed",
                    f"the sandbox's python3 is {sys.version.split()[0]}; "
                    f"environments need {'.'.join(map(str, MIN_PYTHON))} or newer",
                )
            ),
        )
        return
    serve(sys.stdin, out)
