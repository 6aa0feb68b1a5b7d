"""The agent's version, reported in the handshake."""

from importlib.metadata import PackageNotFoundError, version

try:
    AGENT_VERSION = version("rock-kit")
except PackageNotFoundError:  # running from a source tree
    AGENT_VERSION = "0.1.0+src"
