"""Where the agent's metrics are read: the `ReadMetrics` request, and, when asked, a
loopback HTTP port served by prometheus_client's own server.

Rules:
- `ReadMetrics` counts the sandboxes by state, then answers the whole exposition; any
  connection may ask (counts only: no id, owner or command is in a metric).
- The HTTP port binds 127.0.0.1 only (``rock-agent serve --metrics-port N``): the agent's
  socket and SSH are its doors to other machines. Each scrape there counts the sandboxes on
  the agent's event loop first, as `ReadMetrics` does; if that cannot be done (the agent is
  stopping, the engine does not answer) the latest count is served.
- A port that cannot be bound is a `BadRequest` naming it, before the agent serves anything.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

import anyio
import anyio.from_thread
import anyio.to_thread
from prometheus_client import start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from rock_core import BadRequest, RockError
from rock_core.protocol import MetricsReply, ReadMetrics, Reply

from ._metrics import AgentMetrics
from ._runtime import ContainerRuntime

log = logging.getLogger("rock_agent.metrics")

SCRAPE_COUNT_TIMEOUT = 10.0  # seconds an HTTP scrape waits for the count of sandboxes


class _Server(Protocol):
    runtime: ContainerRuntime
    metrics: AgentMetrics


async def read_metrics(server: _Server, conn: object, req: ReadMetrics) -> Reply:
    """Handler of `ReadMetrics`."""
    await server.metrics.refresh(server.runtime)
    return MetricsReply(id=req.id, text=server.metrics.render())


class _Scraped(Collector):
    """The agent's registry, with the sandboxes counted first on the agent's loop."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        # The way from the HTTP server's threads into the agent's loop (None: not yet, or
        # no longer).
        self.portal: anyio.from_thread.BlockingPortal | None = None

    async def _count(self) -> None:
        with anyio.move_on_after(SCRAPE_COUNT_TIMEOUT):
            await self.server.metrics.refresh(self.server.runtime)

    def collect(self) -> Iterator[Metric]:
        try:
            if self.portal is None:
                raise RuntimeError("the agent is not running")
            self.portal.call(self._count)
        except (RockError, RuntimeError) as exc:  # an engine error, or a loop that ended
            log.warning("metrics scrape serves the latest count of sandboxes: %s", exc)
        yield from self.server.metrics.registry.collect()


@contextlib.asynccontextmanager
async def open_metrics_port(server: _Server, port: int | None) -> AsyncIterator[int | None]:
    """Serve the metrics on 127.0.0.1:`port` while the block runs (nothing if None); yields
    the port bound (the one asked, or the one chosen for 0)."""
    if port is None:
        yield None
        return
    scraped = _Scraped(server)
    try:
        httpd, thread = start_http_server(port, addr="127.0.0.1", registry=scraped)
    except OSError as exc:
        raise BadRequest(f"cannot serve metrics on 127.0.0.1:{port}: {exc}") from exc
    bound = int(httpd.server_address[1])
    log.info("serving metrics on http://127.0.0.1:%d/metrics", bound)
    try:
        async with anyio.from_thread.BlockingPortal() as scraped.portal:
            yield bound
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(httpd.shutdown)
            httpd.server_close()
            await anyio.to_thread.run_sync(thread.join)


__all__ = ["open_metrics_port", "read_metrics"]
