"""The agent's Prometheus metrics: what they are and how each answered request moves them.

Rules:
- Every agent has its own `CollectorRegistry`, never the process's global one: tests run many
  agents in one process, and a program embedding an agent keeps its registry its own.
- Requests move the metrics where the agent answers them (`AgentServer.handle` calls
  `answered`): a command's latency is the duration its result reports, its timeout and OOM
  kill are the result's flags (the kernel's OOM-kill count of the sandbox's memory cgroup grew
  while it ran, `_oom`); a create's latency is how long the agent took to answer it.
- Every create the agent answers starts (or finds) a container: on an agent each launch is
  "cold". A pool member's create carries its pool's name (`warmpool_name`); the "warm"
  hand-out happens in the core, which measures it (`rock_core.metrics`).
- Sandboxes by state are counted at scrape time from the engine's list (`refresh`), never
  kept up to date in between; so are the stopped ones whose container the kernel OOM-killed
  (the engine's ``OOMKilled``, one inspect per stopped sandbox).
- Engine calls are timed at `_engine.engine_call` (`_engine_timing`); their `operation` is
  the call's description without the id or image it names, so its values stay few.
- Nothing here may fail a request: observing is arithmetic on values already at hand.
- Names and labels: see docs/metrics.md (which follow kubernetes-sigs/agent-sandbox).
"""

from __future__ import annotations

import logging
import re
from collections import Counter as Tally
from collections.abc import Iterator

import anyio
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rock_core import RockError, SandboxNotFound
from rock_core.defaults import POOL_LABEL
from rock_core.metrics import CREATE_BUCKETS
from rock_core.protocol import (
    CommandReply,
    CommandResult,
    CreateSandbox,
    ExecReply,
    ExecResult,
    Reply,
    Request,
    SandboxReply,
)

from ._runtime import ContainerRuntime

log = logging.getLogger("rock_agent.metrics")

COMMAND_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)
ENGINE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
LAG_INTERVAL = 0.5  # seconds between two looks at the event loop's lag
COMMAND_KINDS = ("session", "exec")
#: States always reported (0 when none), so a dashboard's series never vanish.
STATES = ("created", "running", "paused", "restarting", "exited", "dead")
STOPPED = ("exited", "dead")
INSPECTS = 8  # stopped sandboxes inspected at once for `OOMKilled` at a scrape

# The id or image a description names: the word after "sandbox" or "image" that ends it.
_NAMED = re.compile(r"^(.*\b(?:sandbox|image))\s+\S+$")


def operation(what: str) -> str:
    """An engine call's description without the id or image it names (a label value)."""
    found = _NAMED.match(what)
    return (found.group(1) if found else what)[:80]


class _SandboxStates(Collector):
    """``rock_sandboxes{state}`` from the latest count (`AgentMetrics.refresh`)."""

    def __init__(self) -> None:
        self.counts: Tally[str] = Tally()
        self.oom_killed = 0

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "rock_sandboxes",
            "Sandboxes (containers) of this host, by the engine's state.",
            labels=["state"],
        )
        for state in sorted({*STATES, *self.counts}):
            gauge.add_metric([state], self.counts.get(state, 0))
        yield gauge
        yield GaugeMetricFamily(
            "rock_sandboxes_oom_killed",
            "Stopped sandboxes whose container the kernel killed for memory (OOMKilled).",
            value=self.oom_killed,
        )


class AgentMetrics:
    """One agent's metrics and registry (see the module's rules)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.creation = Histogram(
            "rock_sandbox_creation_latency_seconds",
            "Seconds the agent took to answer a create (start a container, or find it).",
            ["launch_type", "warmpool_name"],
            buckets=CREATE_BUCKETS,
            registry=registry,
        )
        self.commands = Histogram(
            "rock_command_duration_seconds",
            "Seconds a command ran, as its result reports (kind: session or exec).",
            ["kind"],
            buckets=COMMAND_BUCKETS,
            registry=registry,
        )
        self.timeouts = Counter(
            "rock_command_timeouts",
            "Commands ended by their timeout or idle timeout.",
            ["kind"],
            registry=registry,
        )
        self.oom_kills = Counter(
            "rock_command_oom_kills",
            "Commands during which the kernel OOM-killed a process of their sandbox.",
            ["kind"],
            registry=registry,
        )
        # Every series exists from the start, at 0; bound once, as `labels()` costs as much
        # as an observation.
        self._by_kind = {
            kind: (
                self.commands.labels(kind),
                self.timeouts.labels(kind),
                self.oom_kills.labels(kind),
            )
            for kind in COMMAND_KINDS
        }
        self.engine_calls = Histogram(
            "rock_engine_call_duration_seconds",
            "Seconds a bounded container-engine call took, by operation (failures too).",
            ["operation"],
            buckets=ENGINE_BUCKETS,
            registry=registry,
        )
        self.loop_lag = Histogram(
            "rock_event_loop_lag_seconds",
            f"How late the agent's event loop woke a task sleeping {LAG_INTERVAL:g} s.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self._states = _SandboxStates()
        registry.register(self._states)

    # ------------------------------------------------------------------ observing

    def answered(self, request: Request, reply: Reply, seconds: float) -> None:
        """Count a request the agent answered with `reply` after `seconds`."""
        if isinstance(reply, CommandReply):
            self._command("session", reply.result)
        elif isinstance(reply, ExecReply):
            self._command("exec", reply.result)
        elif isinstance(reply, SandboxReply) and isinstance(request, CreateSandbox):
            pool = request.spec.labels.get(POOL_LABEL, "")
            self.creation.labels("cold", pool).observe(seconds)

    def _command(self, kind: str, result: CommandResult | ExecResult) -> None:
        duration, timeouts, oom_kills = self._by_kind[kind]
        duration.observe(result.duration)
        if result.timed_out or getattr(result, "idle_timed_out", False):
            timeouts.inc()
        if result.oom_killed:
            oom_kills.inc()

    def engine_call(self, what: str, seconds: float) -> None:
        """Count one engine call (`_engine_timing.Observer`)."""
        self.engine_calls.labels(operation(what)).observe(seconds)

    async def sample_loop_lag(self) -> None:
        """Measure the event loop's lag until cancelled (a task of `open_agent`)."""
        while True:
            before = anyio.current_time()
            await anyio.sleep(LAG_INTERVAL)
            self.loop_lag.observe(max(0.0, anyio.current_time() - before - LAG_INTERVAL))

    # ------------------------------------------------------------------ reading

    async def refresh(self, runtime: ContainerRuntime) -> None:
        """Count this host's sandboxes by state now (the engine's list, every owner), and
        the stopped ones the kernel killed for memory (the engine's ``OOMKilled``)."""
        infos = await runtime.list_sandboxes()
        stopped = [info.sandbox_id for info in infos if info.state in STOPPED]
        killed = 0
        limiter = anyio.CapacityLimiter(INSPECTS)

        async def look(sandbox_id: str) -> None:
            nonlocal killed
            async with limiter:
                try:
                    killed += (await runtime.container(sandbox_id)).oom_killed
                except SandboxNotFound:
                    pass  # removed meanwhile
                except RockError as exc:  # one sandbox the engine cannot tell of: not counted
                    log.warning("metrics: cannot inspect sandbox %s: %s", sandbox_id, exc)

        async with anyio.create_task_group() as tg:
            for sandbox_id in stopped:
                tg.start_soon(look, sandbox_id)
        self._states.counts = Tally(info.state for info in infos)
        self._states.oom_killed = killed

    def render(self) -> str:
        """The text exposition of every metric."""
        return generate_latest(self.registry).decode()


__all__ = ["AgentMetrics", "operation"]
