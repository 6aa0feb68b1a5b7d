"""rock_sdk: sandboxes, sessions, commands, files and environments for agentic RL.

async with Sandbox(SandboxConfig(image="python:3.11")) as sb:
    r = await sb.arun("echo hello")

``from rock_sdk import make`` gives `rock_sdk.envs.make`, imported on first use so that
``import rock_sdk`` alone does not load gymnasium.

The package logs to the standard `logging` module, under ``rock_sdk``, and configures nothing:
its logger has only a `logging.NullHandler`, so nothing is printed unless the application
configures logging.
"""

import logging as _logging
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from rock_core import (
    AgentNotInstalled,
    AlreadyExists,
    AuthenticationFailed,
    BadRequest,
    CapacityError,
    ClusterStatistics,
    CommandFailed,
    EndReason,
    EngineUnavailable,
    FileNotFound,
    HostKeyMismatch,
    HostPort,
    HostSource,
    HostUnavailable,
    HostUnreachable,
    IllegalTransition,
    ImageNotFound,
    InternalError,
    LifecycleEvent,
    LogChunk,
    NetworkPolicy,
    NotFound,
    PoolStatistics,
    PortForward,
    Progress,
    ProtocolError,
    QueueTimedOut,
    RockError,
    SandboxFailed,
    SandboxLost,
    SandboxNotFound,
    SandboxState,
    SessionClosed,
    SessionNotFound,
    SshOptions,
    StartGate,
    TimedOut,
    TransportError,
)
from rock_core.protocol import (
    NO_LIMIT,
    ImageInfo,
    ImageReport,
    PruneResult,
    SandboxDeadlines,
    SandboxStats,
)

from ._bulk import CreateFailure, CreateManyResult, CreateProgress
from ._cluster import SandboxCluster, open_cluster
from ._config import SandboxConfig
from ._config_file import ConfigDefaults, ConfigError, PoolConfig, RockConfig, load_config
from ._interactive import InteractiveProcess
from ._jobs import Job, JobInfo, JobOutput
from ._loop_thread import LoopThread
from ._pool import Pool
from ._results import CommandResult, ExecResult, ExpectMatch
from ._sandbox import Checkpoint, Sandbox
from ._status import SandboxStatus
from ._terminal import Terminal
from ._top import top

# A library never configures logging (the application does). Without a handler of its own,
# Python's last-resort handler would print the SDK's warnings to stderr.
_logging.getLogger("rock_sdk").addHandler(_logging.NullHandler())

if _TYPE_CHECKING:
    from .envs import make

__all__ = [
    "NO_LIMIT",
    "AgentNotInstalled",
    "AlreadyExists",
    "AuthenticationFailed",
    "BadRequest",
    "CapacityError",
    "Checkpoint",
    "ClusterStatistics",
    "CommandFailed",
    "CommandResult",
    "ConfigDefaults",
    "ConfigError",
    "CreateFailure",
    "CreateManyResult",
    "CreateProgress",
    "EndReason",
    "EngineUnavailable",
    "ExecResult",
    "ExpectMatch",
    "FileNotFound",
    "HostKeyMismatch",
    "HostPort",
    "HostSource",
    "HostUnavailable",
    "HostUnreachable",
    "IllegalTransition",
    "ImageInfo",
    "ImageNotFound",
    "ImageReport",
    "InteractiveProcess",
    "InternalError",
    "Job",
    "JobInfo",
    "JobOutput",
    "LifecycleEvent",
    "LogChunk",
    "LoopThread",
    "NetworkPolicy",
    "NotFound",
    "Pool",
    "PoolConfig",
    "PoolStatistics",
    "PortForward",
    "Progress",
    "ProtocolError",
    "PruneResult",
    "QueueTimedOut",
    "RockConfig",
    "RockError",
    "Sandbox",
    "SandboxCluster",
    "SandboxConfig",
    "SandboxDeadlines",
    "SandboxFailed",
    "SandboxLost",
    "SandboxNotFound",
    "SandboxState",
    "SandboxStats",
    "SandboxStatus",
    "SessionClosed",
    "SessionNotFound",
    "SshOptions",
    "StartGate",
    "Terminal",
    "TimedOut",
    "TransportError",
    "load_config",
    "make",
    "open_cluster",
    "top",
]


def __getattr__(name: str) -> _Any:
    if name == "make":
        from .envs import make

        return make
    raise AttributeError(f"module 'rock_sdk' has no attribute {name!r}")
