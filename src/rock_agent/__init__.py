"""rock_agent: the per-host daemon that drives Docker and runs sessions, commands and files."""

from ._docker import DockerRuntime
from ._server import AgentServer
from ._version import AGENT_VERSION

__all__ = ["AGENT_VERSION", "AgentServer", "DockerRuntime"]
