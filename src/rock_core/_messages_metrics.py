"""Messages of reading an agent's metrics.

Rules:
- Built on the base messages of `_messages` (same tag field, same request ids); joined into
  the unions in `_protocol`.
- An agent that serves `ReadMetrics` announces the capability "metrics"; a client checks it
  before sending (`AgentConnection.require`), so an older agent is told apart.
- The reply carries the Prometheus text exposition as the agent's `prometheus_client` wrote
  it: the protocol never defines a format of its own for metrics.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from ._messages import Reply, Request

#: The most text one exposition may hold (it travels in one frame).
MAX_EXPOSITION = 4 << 20


class ReadMetrics(Request, tag="metrics"):
    """Report this agent's metrics (see docs/metrics.md)."""


class MetricsReply(Reply, tag="metrics_result"):
    """Answer to `ReadMetrics`: the text exposition format (version 0.0.4)."""

    text: Annotated[str, msgspec.Meta(max_length=MAX_EXPOSITION)]


__all__ = ["MAX_EXPOSITION", "MetricsReply", "ReadMetrics"]
