"""The in-sandbox environment server: environments driven by JSON lines on stdin.

`RemoteEnv` uploads this package's game code into a sandbox and starts this server in a
session (``python3 -u -c "...; main()"``); the server holds any number of environments, each
in a numbered slot, and answers each request line with its reply. Standard library only: it
runs on the image's bare python3.

Wire format (UTF-8, one JSON object per line, ASCII-escaped so no line holds a raw newline):
- ``{"op": "make", "env": k, "entry_point": "module:Name", "kwargs": {...}}`` builds an
  environment in slot ``k`` (an int; a slot in use is refused); then any number of
  ``{"op": "reset", "env": k, "seed": int|null, "options": {...}|null}`` and
  ``{"op": "step", "env": k, "action": str}``; ``{"op": "close", "env": k}`` closes that
  environment and frees its slot. ``"env"`` defaults to 0, so a client with one environment
  may leave it out. ``{"op": "close"}`` without ``"env"`` closes every environment, and the
  server exits (it also exits at end of input).
- ``{"op": "batch", "calls": [call, ...]}`` carries several of the calls above (make, reset,
  step, close; a close in a batch closes one environment only), run in order; one
  environment's failure never stops the others. Its result is one outcome per call:
  ``{"ok": true, "result": ...}`` or ``{"ok": false, "code": ..., "message": ...,
  "traceback": ...}``.
- every request may carry an ``"id"``, echoed in its reply.
- reply: `REPLY_PREFIX` then ``{"ok": true, "id": ..., "result": ...}`` (make and close:
  null; reset: ``[obs, info]``; step: ``[obs, reward, terminated, truncated, info]``) or
  ``{"ok": false, "id": ..., "code": ..., "message": ..., "traceback": ...}``, where
  ``code`` is the `RockError` code of the exception (``rock_error`` for any other exception
  type). A failure before any request is read (a Python too old) has no id. The prefix
  starts with an ASCII record separator so a reply can never be confused with what the
  environment itself prints (the server points ``sys.stdout`` at stderr, and both reach the
  same stream).
- A batch's reply longer than `PART_BYTES` is split over several lines, each carrying some of
  the outcomes in order, all but the last with ``"more": true``: a line stays short enough
  for a session's ``expect`` window. One result whose JSON is longer than `MAX_RESULT_BYTES`
  is answered with a ``rock_error`` naming its size.
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

__all__ = [
    "MAX_RESULT_BYTES",
    "PART_BYTES",
    "REPLY_PATTERN",
    "REPLY_PREFIX",
    "Server",
    "answer",
    "main",
    "serve",
]

#: What starts every reply line.
REPLY_PREFIX = "\x1erock-env "

#: A regular expression matching one whole reply line (for `InteractiveProcess.expect`).
REPLY_PATTERN = "\x1erock-env [^\\n]*\\n"

#: Oldest Python the game code runs on (dataclass slots, ``X | Y`` unions at runtime).
MIN_PYTHON = (3, 10)

#: Longest JSON of one result: an agent's ``expect`` sees its last MiB of output only.
MAX_RESULT_BYTES = 768 << 10

#: A batch reply is cut into lines of about this many bytes (a line holds one outcome at least).
PART_BYTES = 256 << 10


class _Failure(Exception):
    """A request the server refuses; carries a `RockError` code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _build(entry_point: Any, kwargs: Any) -> Any:
    if not isinstance(entry_point, str) or not isinstance(kwargs, dict):
        raise _Failure("bad_request", "make needs an entry point (a str) and kwargs (an object)")
    module_name, _, attribute = entry_point.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise _Failure(
            "not_found", f"cannot import entry point {entry_point!r} in the sandbox: {exc}"
        ) from exc
    return factory(**kwargs)


def _write(out: TextIO, line: str) -> None:
    out.write(line)
    out.flush()


def _reply(out: TextIO, payload: dict[str, Any]) -> None:
    _write(out, REPLY_PREFIX + json.dumps(payload, default=repr) + "\n")


def _result_json(op: Any, result: Any) -> str:
    try:
        text = json.dumps(result, default=repr)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _Failure(
            "rock_error", f"the environment's {op} result cannot be sent as JSON: {exc}"
        ) from exc
    if len(text) > MAX_RESULT_BYTES:
        raise _Failure(
            "rock_error",
            f"the environment's {op} result is {len(text)} bytes as JSON, above the limit of "
            f"{MAX_RESULT_BYTES} bytes a reply may carry",
        )
    return text


def _error(exc: BaseException) -> dict[str, Any]:
    code = getattr(exc, "code", None)
    if not isinstance(code, str) or not isinstance(exc, Exception):
        code = "rock_error"
    message = str(exc)
    if code == "rock_error" and not isinstance(exc, _Failure):
        message = f"the environment raised {type(exc).__name__}: {exc}"
    return {"ok": False, "code": code, "message": message, "traceback": traceback.format_exc()}


class Server:
    """The environments of one server, by slot, and the calls they answer."""

    def __init__(self) -> None:
        self.envs: dict[int, Any] = {}

    def call(self, request: Any) -> str:
        """Run one call (not a batch); its result as JSON, or `_Failure` / the env's error."""
        if not isinstance(request, dict):
            raise _Failure("bad_request", f"a call is a JSON object, got {request!r}")
        op = request.get("op")
        slot = request.get("env", 0)
        if type(slot) is not int:
            raise _Failure("bad_request", f"env must be an int slot number, got {slot!r}")
        if op == "make":
            if slot in self.envs:
                raise _Failure("bad_request", f"environment {slot} exists already")
            self.envs[slot] = _build(request.get("entry_point"), request.get("kwargs") or {})
            return "null"
        env = self.envs.get(slot)
        if env is None:
            where = f" of environment {slot}" if "env" in request else ""
            raise _Failure("bad_request", f"{op!r} before make{where}")
        if op == "step":
            action = request.get("action")
            if not isinstance(action, str):
                raise _Failure("bad_request", f"a step's action is a str, got {action!r}")
            result: Any = list(env.step(action))
        elif op == "reset":
            result = list(env.reset(request.get("seed"), options=request.get("options")))
        elif op == "close":
            del self.envs[slot]
            env.close()
            return "null"
        else:
            raise _Failure("bad_request", f"unknown op {op!r}")
        return _result_json(op, result)

    def batch(self, calls: Any) -> list[str]:
        """Run `calls` in order: one outcome (as JSON) per call, failures included."""
        if not isinstance(calls, list):
            raise _Failure("bad_request", f"a batch's calls are a list, got {calls!r}")
        outcomes = []
        for request in calls:
            try:
                if isinstance(request, dict) and request.get("op") == "batch":
                    raise _Failure("bad_request", "a batch cannot hold a batch")
                outcomes.append('{"ok": true, "result": ' + self.call(request) + "}")
            except Exception as exc:
                outcomes.append(json.dumps(_error(exc), default=repr))
        return outcomes

    def close(self) -> None:
        """Close every environment."""
        envs, self.envs = self.envs, {}
        for env in envs.values():
            env.close()


def _batch_lines(number: Any, outcomes: list[str]) -> list[str]:
    """The reply lines of a batch: outcomes cut into parts of about `PART_BYTES` each."""
    head = REPLY_PREFIX + '{"ok": true, "id": ' + json.dumps(number, default=repr)
    lines: list[str] = []
    part: list[str] = []
    size = 0
    for outcome in outcomes:
        if part and size + len(outcome) > PART_BYTES:
            lines.append(head + ', "more": true, "result": [' + ",".join(part) + "]}\n")
            part, size = [], 0
        part.append(outcome)
        size += len(outcome) + 1
    lines.append(head + ', "result": [' + ",".join(part) + "]}\n")
    return lines


def answer(server: Server, line: str) -> tuple[str, bool]:
    """The reply lines to one request line, and whether the server is to exit after them."""
    number = None
    try:
        try:
            request = json.loads(line)
        except ValueError as exc:
            raise _Failure("bad_request", f"a request line is not JSON: {exc}") from exc
        if not isinstance(request, dict):
            raise _Failure("bad_request", f"a request is a JSON object, got {request!r}")
        number = request.get("id")
        op = request.get("op")
        if op == "batch":
            return "".join(_batch_lines(number, server.batch(request.get("calls")))), False
        head = REPLY_PREFIX + '{"ok": true, "id": ' + json.dumps(number, default=repr)
        if op == "close" and "env" not in request:
            server.close()
            return head + ', "result": null}\n', True
        return head + ', "result": ' + server.call(request) + "}\n", False
    except Exception as exc:
        error = json.dumps({**_error(exc), "id": number}, default=repr)
        return REPLY_PREFIX + error + "\n", False


def serve(requests: TextIO, out: TextIO) -> None:
    """Answer requests until ``close`` (without ``env``) or the end of `requests`."""
    server = Server()
    for line in requests:
        if not line.strip():
            continue
        reply, done = answer(server, line)
        _write(out, reply)
        if done:
            return


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
