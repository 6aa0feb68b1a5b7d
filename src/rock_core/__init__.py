"""rock_core: the embeddable, pure-async core: protocol, lifecycle, scheduler and cluster driver.

Runs under asyncio and trio (anyio). No server: a program embeds it with `open_cluster`.
"""

from ._channel import ByteStream
from ._cluster import Cluster, SandboxRecord, new_sandbox_id, open_cluster
from ._connection import AgentConnection, open_agent_connection
from ._errors import (
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
    SessionClosed,
    SessionNotFound,
    TimedOut,
    TransportError,
)
from ._owner import local_owner
from ._protocol import PROTOCOL_VERSION, SandboxInfo, SandboxSpec
from ._scheduler import Demand, Resources, Scheduler, SchedulerStatistics
from ._states import SandboxEvent, SandboxLifecycle, SandboxState, Transition, state_diagram

__all__ = [
    "PROTOCOL_VERSION",
    "AgentConnection",
    "AlreadyExists",
    "BadRequest",
    "ByteStream",
    "CapacityError",
    "Cluster",
    "CommandFailed",
    "Demand",
    "FileNotFound",
    "IllegalTransition",
    "ImageNotFound",
    "NotFound",
    "ProtocolError",
    "Resources",
    "RockError",
    "SandboxEvent",
    "SandboxFailed",
    "SandboxInfo",
    "SandboxLifecycle",
    "SandboxNotFound",
    "SandboxRecord",
    "SandboxSpec",
    "SandboxState",
    "Scheduler",
    "SchedulerStatistics",
    "SessionClosed",
    "SessionNotFound",
    "TimedOut",
    "Transition",
    "TransportError",
    "local_owner",
    "new_sandbox_id",
    "open_agent_connection",
    "open_cluster",
    "state_diagram",
]
