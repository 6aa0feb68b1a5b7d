"""rock_sdk: sandboxes, sessions, commands, files and environments for agentic RL.

async with Sandbox(SandboxConfig(image="python:3.11")) as sb:
    r = await sb.arun("echo hello")
"""

from rock_core import (
    AlreadyExists,
    BadRequest,
    CapacityError,
    CommandFailed,
    FileNotFound,
    IllegalTransition,
    ImageNotFound,
    NotFound,
    ProtocolError,
    RockError,
    SandboxFailed,
    SandboxNotFound,
    SandboxState,
    SessionClosed,
    SessionNotFound,
    TimedOut,
    TransportError,
    open_cluster,
)

from ._config import SandboxConfig
from ._interactive import InteractiveProcess
from ._results import CommandResult, ExecResult, ExpectMatch
from ._sandbox import Sandbox, SandboxStatus

__all__ = [
    "AlreadyExists",
    "BadRequest",
    "CapacityError",
    "CommandFailed",
    "CommandResult",
    "ExecResult",
    "ExpectMatch",
    "FileNotFound",
    "IllegalTransition",
    "ImageNotFound",
    "InteractiveProcess",
    "NotFound",
    "ProtocolError",
    "RockError",
    "Sandbox",
    "SandboxConfig",
    "SandboxFailed",
    "SandboxNotFound",
    "SandboxState",
    "SandboxStatus",
    "SessionClosed",
    "SessionNotFound",
    "TimedOut",
    "TransportError",
    "open_cluster",
]
