"""rock_core: the embeddable, pure-async core: protocol, lifecycle, scheduler and cluster driver.

Runs under asyncio and trio (anyio). No server: a program embeds it with `open_cluster`.
"""

from ._channel import ByteStream
from ._cluster import Cluster, Host, SandboxRecord, new_sandbox_id, open_cluster
from ._connection import AgentConnection, open_agent_connection
from ._errors import (
    AgentNotInstalled,
    AlreadyExists,
    AuthenticationFailed,
    BadRequest,
    CapacityError,
    CommandFailed,
    EngineUnavailable,
    FileNotFound,
    HostKeyMismatch,
    HostUnavailable,
    HostUnreachable,
    IllegalTransition,
    ImageNotFound,
    InternalError,
    NotFound,
    ProtocolError,
    QueueTimedOut,
    RockError,
    SandboxFailed,
    SandboxLost,
    SandboxNotFound,
    SessionClosed,
    SessionNotFound,
    TimedOut,
    TransportError,
)
from ._owner import local_owner
from ._pool import RecordPool, open_pool
from ._protocol import PROTOCOL_VERSION, SandboxInfo, SandboxSpec
from ._scheduler import Demand, Resources, Scheduler, SchedulerStatistics
from ._ssh import SshOptions
from ._states import SandboxEvent, SandboxLifecycle, SandboxState, Transition, state_diagram
from ._statistics import ClusterStatistics, PoolStatistics

__all__ = [
    "PROTOCOL_VERSION",
    "AgentConnection",
    "AgentNotInstalled",
    "AlreadyExists",
    "AuthenticationFailed",
    "BadRequest",
    "ByteStream",
    "CapacityError",
    "Cluster",
    "ClusterStatistics",
    "CommandFailed",
    "Demand",
    "EngineUnavailable",
    "FileNotFound",
    "Host",
    "HostKeyMismatch",
    "HostUnavailable",
    "HostUnreachable",
    "IllegalTransition",
    "ImageNotFound",
    "InternalError",
    "NotFound",
    "PoolStatistics",
    "ProtocolError",
    "QueueTimedOut",
    "RecordPool",
    "Resources",
    "RockError",
    "SandboxEvent",
    "SandboxFailed",
    "SandboxInfo",
    "SandboxLifecycle",
    "SandboxLost",
    "SandboxNotFound",
    "SandboxRecord",
    "SandboxSpec",
    "SandboxState",
    "Scheduler",
    "SchedulerStatistics",
    "SessionClosed",
    "SessionNotFound",
    "SshOptions",
    "TimedOut",
    "Transition",
    "TransportError",
    "local_owner",
    "new_sandbox_id",
    "open_agent_connection",
    "open_cluster",
    "open_pool",
    "state_diagram",
]
