"""One exception tree for the whole kit, split by what the caller can do about an error.

Rules:
- Every error a user can see derives from `RockError`.
- Each class has a stable `code`; errors cross the wire as (code, message, details) and are
  rebuilt on the other side from `ERROR_CLASSES`, so the agent's error is the caller's error.
- Foreign exceptions (aiodocker, asyncssh, msgspec, OSError) are translated at the boundary
  with ``raise ... from exc``; they never reach a user.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RockError(Exception):
    """Base of every error this kit raises."""

    code: ClassVar[str] = "rock_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class BadRequest(RockError, ValueError):
    """The request itself is wrong (bad value, bad state for the request); retrying won't help."""

    code = "bad_request"


class AlreadyExists(BadRequest):
    """A name the request wants (a session name, a sandbox id with another spec) is taken."""

    code = "already_exists"


class IllegalTransition(BadRequest):
    """A sandbox was asked to do something its current state does not allow."""

    code = "illegal_transition"


class NotFound(RockError, LookupError):
    """The thing named (sandbox, session, file, image) does not exist."""

    code = "not_found"


class SandboxNotFound(NotFound):
    """No sandbox with that id."""

    code = "sandbox_not_found"


class SessionNotFound(NotFound):
    """No session with that name in the sandbox."""

    code = "session_not_found"


class FileNotFound(NotFound, FileNotFoundError):
    """The path does not exist inside the sandbox."""

    code = "file_not_found"


class ImageNotFound(NotFound):
    """The image is not on the host and could not (or may not) be pulled."""

    code = "image_not_found"


class TimedOut(RockError, TimeoutError):
    """An operation did not finish within its deadline."""

    code = "timed_out"


class CapacityError(RockError):
    """No host can take the request now (queue full) or ever (spec larger than any host)."""

    code = "capacity"


class QueueTimedOut(CapacityError, TimedOut):
    """A create waited its `queue_timeout` for room on a host and found none.

    Both a `CapacityError` (the hosts are full) and a `TimedOut` (a wait ran out), so code
    written for either catches it.
    """

    code = "queue_timed_out"


class HostFull(CapacityError):
    """A host's agent refused a create: the host is at its start cap, its sandbox limit, or its
    cpus or memory, counting every core that uses it (docs/scale-out.md, "Several trainers,
    one fleet"). `details` say which (``full``: ``starts``, ``sandboxes``, ``cpus`` or
    ``memory``) and the host-wide counts the agent holds. A cluster never shows it to a caller:
    it waits for room (elsewhere, or there) as its own ledger would have made it wait.
    """

    code = "host_full"


class TransportError(RockError, ConnectionError):
    """The link to an agent is broken or was never made; the request's outcome may be unknown."""

    code = "transport"


class ProtocolError(TransportError):
    """The peer spoke something we do not understand: bad frame, bad message, version mismatch."""

    code = "protocol"


class HostUnreachable(TransportError):
    """No network path to the host: refused, timed out, no route, unknown name."""

    code = "host_unreachable"


class AuthenticationFailed(TransportError):
    """The host refused every credential offered (keys, ssh-agent)."""

    code = "authentication_failed"


class HostKeyMismatch(TransportError):
    """The host's key is not the one `known_hosts` lists for it, or it is not listed at all."""

    code = "host_key_mismatch"


class AgentNotInstalled(TransportError):
    """The host answers, but has no `rock-agent` to run."""

    code = "agent_not_installed"


class HostUnavailable(TransportError):
    """The host's link is down right now; the core is reconnecting to it."""

    code = "host_unavailable"


class EngineUnavailable(TransportError):
    """The host's agent runs, but no container engine answers it (not running, no permission)."""

    code = "engine_unavailable"


class InternalError(RockError):
    """A bug: the agent (or the core) failed in a way it does not expect. Please report it."""

    code = "internal_error"


class SandboxFailed(RockError):
    """The sandbox (its container) failed: it did not start, died, or the engine refused."""

    code = "sandbox_failed"


class SessionClosed(SandboxFailed):
    """The session's shell has exited (for example after `exit`); open a new session."""

    code = "session_closed"


class SandboxLost(SandboxFailed):
    """The sandbox's host stayed unreachable past the grace period; its state is unknown."""

    code = "sandbox_lost"


class CommandFailed(RockError):
    """A command run with ``check=True`` exited non-zero; `result` holds what it produced."""

    code = "command_failed"

    def __init__(self, message: str, result: Any = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.result = result


ERROR_CLASSES: dict[str, type[RockError]] = {
    cls.code: cls
    for cls in (
        RockError,
        BadRequest,
        AlreadyExists,
        IllegalTransition,
        NotFound,
        SandboxNotFound,
        SessionNotFound,
        FileNotFound,
        ImageNotFound,
        TimedOut,
        CapacityError,
        QueueTimedOut,
        HostFull,
        TransportError,
        ProtocolError,
        HostUnreachable,
        AuthenticationFailed,
        HostKeyMismatch,
        AgentNotInstalled,
        HostUnavailable,
        EngineUnavailable,
        InternalError,
        SandboxFailed,
        SandboxLost,
        SessionClosed,
        CommandFailed,
    )
}


def error_from_code(code: str, message: str, details: dict[str, Any] | None = None) -> RockError:
    """Rebuild an error received over the wire; unknown codes become a plain `RockError`."""
    cls = ERROR_CLASSES.get(code, RockError)
    return cls(message, **(details or {}))
