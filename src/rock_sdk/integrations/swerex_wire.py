"""The swerex-remote protocol's messages (swe-rex 1.4.0), as plain values: no I/O.

SWE-ReX's client (`swerex.runtime.remote.RemoteRuntime`) posts each request as a JSON object
and reads back a JSON object; a failure it should raise comes back with HTTP status 511 and a
``{"swerexception": {"message", "class_path", "traceback", "extra_info"}}`` body, from which the
client rebuilds the exception by importing `class_path` and calling it with the message.

Rules:
- Request bodies decode into the structs below (unknown fields are ignored, as the reference
  server's models do); a body that does not decode is a `PayloadError` (HTTP 422).
- Every error the client should raise is a `RemoteError` naming the class it rebuilds: SWE-ReX's
  own (`SessionDoesNotExistError`, `NonZeroExitCodeError`, `CommandTimeoutError`, ...) or a
  builtin (`FileNotFoundError`, `ValueError`). `remote_error_of` is the one place a kit error
  becomes one, keeping the kit's message.
- Nothing here imports swerex: the endpoint runs without it; only its clients need it.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from rock_core import (
    AlreadyExists,
    BadRequest,
    FileNotFound,
    RockError,
    SessionClosed,
    SessionNotFound,
    TimedOut,
)

SWEREX = "swerex.exceptions."
SESSION_MISSING = SWEREX + "SessionDoesNotExistError"
SESSION_EXISTS = SWEREX + "SessionExistsError"
NON_ZERO_EXIT = SWEREX + "NonZeroExitCodeError"
COMMAND_TIMEOUT = SWEREX + "CommandTimeoutError"
SWEREX_ERROR = SWEREX + "SwerexException"
FILE_MISSING = "builtins.FileNotFoundError"
BAD_VALUE = "builtins.ValueError"


class RemoteError(Exception):
    """An error for the client to raise: `class_path` is the class it rebuilds."""

    def __init__(self, class_path: str, message: str) -> None:
        super().__init__(message)
        self.class_path = class_path
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body of the 511 reply that carries it."""
        return {
            "swerexception": {
                "message": self.message,
                "class_path": self.class_path,
                "traceback": "",
                "extra_info": {},
            }
        }


class PayloadError(Exception):
    """A request body that is not the message its route takes (HTTP 422)."""


def remote_error_of(exc: RockError, *, creating_session: bool = False) -> RemoteError:
    """The SWE-ReX error a kit error becomes (its message kept)."""
    message = str(exc)
    if isinstance(exc, SessionNotFound | SessionClosed):
        return RemoteError(SESSION_MISSING, message)
    if isinstance(exc, AlreadyExists) and creating_session:
        return RemoteError(SESSION_EXISTS, message)
    if isinstance(exc, FileNotFound):
        return RemoteError(FILE_MISSING, message)
    if isinstance(exc, TimedOut):
        return RemoteError(COMMAND_TIMEOUT, message)
    if isinstance(exc, BadRequest):
        return RemoteError(BAD_VALUE, message)
    return RemoteError(SWEREX_ERROR, f"{type(exc).__name__}: {message}")


# ---------------------------------------------------------------------- requests


class CreateSession(msgspec.Struct, kw_only=True, tag_field="session_type", tag="bash"):
    """``/create_session``: a bash session, after sourcing `startup_source`."""

    session: str = "default"
    startup_source: list[str] = msgspec.field(default_factory=list)
    startup_timeout: float = 1.0


class BashAction(msgspec.Struct, kw_only=True, tag_field="action_type", tag="bash"):
    """``/run_in_session``: a command line for a session, or input to its running program."""

    command: str
    session: str = "default"
    timeout: float | None = None
    is_interactive_command: bool = False
    is_interactive_quit: bool = False
    check: Literal["silent", "raise", "ignore"] = "raise"
    error_msg: str = ""
    expect: list[str] = msgspec.field(default_factory=list)


class BashInterrupt(msgspec.Struct, kw_only=True, tag_field="action_type", tag="bash_interrupt"):
    """``/run_in_session``: Ctrl-C to what runs in a session."""

    session: str = "default"
    timeout: float = 0.2
    n_retry: int = 3
    expect: list[str] = msgspec.field(default_factory=list)


class CloseSession(msgspec.Struct, kw_only=True, tag_field="session_type", tag="bash"):
    """``/close_session``."""

    session: str = "default"


class Command(msgspec.Struct, kw_only=True):
    """``/execute``: a program outside any session, as `subprocess.run` would run it."""

    command: str | list[str]
    timeout: float | None = None
    shell: bool = False
    check: bool = False
    error_msg: str = ""
    env: dict[str, str] | None = None
    cwd: str | None = None
    merge_output_streams: bool = False


class ReadFile(msgspec.Struct, kw_only=True):
    """``/read_file``: a file's text in `encoding` (UTF-8 when None)."""

    path: str
    encoding: str | None = None
    errors: str | None = None


class WriteFile(msgspec.Struct, kw_only=True):
    """``/write_file``: a file's whole text."""

    content: str
    path: str


Action = BashAction | BashInterrupt


def decode(body: bytes, kind: type[Any]) -> Any:
    """Decode a request body as `kind` (a struct or a union of them); `PayloadError` if not."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        raise PayloadError(str(exc)) from None


# ---------------------------------------------------------------------- replies


def observation(
    output: str, exit_code: int | None, *, expect_string: str = "", failure_reason: str = ""
) -> dict[str, Any]:
    """A ``BashObservation``."""
    return {
        "output": output,
        "exit_code": exit_code,
        "failure_reason": failure_reason,
        "expect_string": expect_string,
        "session_type": "bash",
    }


def command_response(stdout: str, stderr: str, exit_code: int | None) -> dict[str, Any]:
    """A ``CommandResponse``."""
    return {"stdout": stdout, "stderr": stderr, "exit_code": exit_code}


def session_response(output: str = "") -> dict[str, Any]:
    """A ``CreateBashSessionResponse`` (`output` empty) or a ``CloseBashSessionResponse``."""
    return {"output": output, "session_type": "bash"}
