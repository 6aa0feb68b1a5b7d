"""rock_agent: the per-host daemon that drives Docker and runs sessions, commands and files.

An agent is `async with open_agent(runtime) as server`, serving byte streams with
`server.serve(stream, peer)`; its runtime is any `ContainerRuntime` (`DockerRuntime` for a real
engine, `rock_agent.testing.FakeRuntime` in tests).
"""

from ._docker import DockerRuntime
from ._open import open_agent
from ._runtime import (
    ContainerDetail,
    ContainerRuntime,
    ContainerSummary,
    DiskUsage,
    EngineEvent,
    ImageRecord,
    OutputChunk,
    Process,
    ProcessState,
    Resources,
    StatsReading,
)
from ._server import AgentServer
from ._version import AGENT_VERSION

__all__ = [
    "AGENT_VERSION",
    "AgentServer",
    "ContainerDetail",
    "ContainerRuntime",
    "ContainerSummary",
    "DiskUsage",
    "DockerRuntime",
    "EngineEvent",
    "ImageRecord",
    "OutputChunk",
    "Process",
    "ProcessState",
    "Resources",
    "StatsReading",
    "open_agent",
]
