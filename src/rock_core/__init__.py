"""rock_core: the embeddable, pure-async core: protocol, lifecycle, scheduler and cluster driver.

Runs under asyncio and trio (anyio). No server: a program embeds it with `open_cluster`.

Public modules beside this one: `rock_core.protocol` (the wire messages, limits and codec),
`rock_core.serving` (what an agent needs to serve the protocol), `rock_core.tar` (tar streams
built and read piece by piece), `rock_core.defaults` (the defaults of the core's options) and
`rock_core.testing` (fakes). Every other module is private: a layer over the core (the SDK, the
agent) imports only these.

The core logs to the standard `logging` module, under ``rock_core`` (``rock_core.connection``,
``rock_core.ssh``, ...), and configures nothing: its logger has only a `logging.NullHandler`,
so nothing is printed unless the application configures logging. What goes wrong reaches the
caller as the exception it raises.
"""

import logging as _logging

from ._admin_cluster import open_admin_cluster
from ._attach import Attachment, PoolSite
from ._channel import ByteStream
from ._checkpoints import Checkpoint, make_checkpoint
from ._cluster import Cluster, Host, SandboxRecord, new_sandbox_id, open_cluster
from ._connection import AgentConnection, RequestStream, open_agent_connection, unwrap_single_errors
from ._ends_read import read_ends
from ._errors import (
    AgentNotInstalled,
    AlreadyExists,
    AuthenticationFailed,
    BadRequest,
    CapacityError,
    CommandFailed,
    EngineUnavailable,
    FileNotFound,
    HostFull,
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
from ._event_feed import LifecycleEvent
from ._host_source import HostSource
from ._hosts import AddressConnector, Connector
from ._images import list_images, prune_images, warm_image
from ._link import LinkState, link_diagram
from ._logs import LogChunk, read_logs, sandbox_logs
from ._metrics_read import read_metrics
from ._network import NetworkPolicy
from ._options import ClusterOptions
from ._owner import local_owner
from ._pool import RecordPool, delete_quietly, open_pool
from ._pool_options import PoolOptions
from ._ports import PortForward, locate_sandbox, open_port_forward
from ._progress import Progress, ProgressCallback, ProgressReporter, check_progress
from ._protocol import PROTOCOL_VERSION, SandboxInfo, SandboxSpec
from ._reverse import HostPort, open_host_port
from ._scheduler import Demand, Resources, Scheduler, SchedulerStatistics
from ._ssh import SshOptions
from ._start_gate import StartGate
from ._states import (
    EndReason,
    SandboxEvent,
    SandboxLifecycle,
    SandboxState,
    Transition,
    state_diagram,
)
from ._statistics import ClusterStatistics, PoolStatistics

# A library never configures logging (the application does). Without a handler of its own,
# Python's last-resort handler would print every warning to stderr, and an error the caller
# gets as an exception (a lost link, say) would be printed a second time.
_logging.getLogger("rock_core").addHandler(_logging.NullHandler())

__all__ = [
    "PROTOCOL_VERSION",
    "AddressConnector",
    "AgentConnection",
    "AgentNotInstalled",
    "AlreadyExists",
    "Attachment",
    "AuthenticationFailed",
    "BadRequest",
    "ByteStream",
    "CapacityError",
    "Checkpoint",
    "Cluster",
    "ClusterOptions",
    "ClusterStatistics",
    "CommandFailed",
    "Connector",
    "Demand",
    "EndReason",
    "EngineUnavailable",
    "FileNotFound",
    "Host",
    "HostFull",
    "HostKeyMismatch",
    "HostPort",
    "HostSource",
    "HostUnavailable",
    "HostUnreachable",
    "IllegalTransition",
    "ImageNotFound",
    "InternalError",
    "LifecycleEvent",
    "LinkState",
    "LogChunk",
    "NetworkPolicy",
    "NotFound",
    "PoolOptions",
    "PoolSite",
    "PoolStatistics",
    "PortForward",
    "Progress",
    "ProgressCallback",
    "ProgressReporter",
    "ProtocolError",
    "QueueTimedOut",
    "RecordPool",
    "RequestStream",
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
    "StartGate",
    "TimedOut",
    "Transition",
    "TransportError",
    "check_progress",
    "delete_quietly",
    "link_diagram",
    "list_images",
    "local_owner",
    "locate_sandbox",
    "make_checkpoint",
    "new_sandbox_id",
    "open_admin_cluster",
    "open_agent_connection",
    "open_cluster",
    "open_host_port",
    "open_pool",
    "open_port_forward",
    "prune_images",
    "read_ends",
    "read_logs",
    "read_metrics",
    "sandbox_logs",
    "state_diagram",
    "unwrap_single_errors",
    "warm_image",
]
