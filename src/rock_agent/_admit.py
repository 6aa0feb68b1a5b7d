"""Shared admission: this host's start cap and capacity, for every core that uses the agent.

Several trainer processes, each embedding its own core, may send creates to one agent; each
core's ledger counts only its own sandboxes. The agent is where they meet, so it admits.

Rules:
- A create is admitted only if, counting every sandbox of this host (all owners and
  connections: the engine's containers labelled with the host id, plus the creates in
  flight), the host stays within its start cap (`Limits.max_starts` creates in flight), its
  sandbox limit (`Limits.max_sandboxes`, 0: none) and, with `Limits.capacity`, the engine's
  cpus and memory. Otherwise it is refused with `HostFull`: ``full`` names what is full (the
  first of ``starts``, ``sandboxes``, ``cpus``, ``memory``) and the details carry the host-wide
  counts, so the core learns what other cores hold.
- A socket agent (the one agent of a host that programs share) counts the sandboxes of socket
  agents only (`leased_only`: those labelled as kept under a lease): a private stdio agent's
  sandboxes belong to its one program, whose core counts them.
- A sandbox holds its spec's cpus, memory and one sandbox slot from its admission until it is
  removed, running or stopped (as a core's ledger counts it); a start slot until its create
  returns. A container found on the host (adopted at start, or made by another agent process
  with the same host id) counts at its labelled spec.
- Over-commit: sandboxes already on the host are never refused or removed, even when they hold
  more than the host has (an agent restarted with smaller limits, adopted containers); new
  creates are refused until enough of them are gone.
- The counts are conservative between looks: a removal through this agent frees its room at
  once; other ends (expiry, reaping, another agent) are found by listing the engine again,
  which the agent does before it refuses (at most every `RELIST_EVERY` seconds). A create that
  was admitted is never forgotten by a listing that began before it finished.
- A create of an id already counted (a retried create) is not counted again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import msgspec
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rock_core import HostFull
from rock_core.protocol import SHARED_ADMISSION, SandboxSpec

from ._labels import LABEL_LEASED
from ._runtime import ContainerRuntime, Resources

DEFAULT_MAX_STARTS = 16  # twice a core's default: one core never meets it, several may
RELIST_EVERY = 0.25  # seconds between two listings of the engine made before a refusal
NANO = 1_000_000_000


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """What the agent enforces for its host (see the module's rules)."""

    max_starts: int = DEFAULT_MAX_STARTS
    max_sandboxes: int = 0
    capacity: bool = True  # cpus and memory too (the engine's)


def _demand(spec: SandboxSpec | None) -> tuple[int, int]:
    """(nano-cpus, memory) a sandbox holds; a container without a spec holds only its slot."""
    if spec is None:
        return (0, 0)
    return (round(spec.cpus * NANO), spec.memory)


class HostAdmission:
    """The host-wide ledger of one agent; see the module's rules."""

    def __init__(self, limits: Limits, *, leased_only: bool = False) -> None:
        self.limits = limits
        self.leased_only = leased_only  # count only sandboxes of socket agents (see rules)
        self.resources: Resources | None = None
        self.held: dict[str, tuple[int, int]] = {}  # by sandbox id: (nano-cpus, memory)
        self.starting: set[str] = set()
        self.refusals: Counter[str] = Counter()  # by what was full
        self.peak_starting = 0
        self.peak_held = 0
        self._listed_at: float | None = None
        self._recent: set[str] | None = None  # admitted while a listing runs
        self._listing = anyio.Lock()

    def capabilities(self) -> list[str]:
        """What the agent announces for this (always: the start cap is always enforced)."""
        return [SHARED_ADMISSION]

    # ------------------------------------------------------------------ decisions (no I/O)

    def full(self, cpus: int, memory: int) -> str:
        """What a create of (nano-cpus, memory) would overrun now; "" if it fits."""
        limits = self.limits
        if len(self.starting) >= limits.max_starts:
            return "starts"
        if limits.max_sandboxes and len(self.held) >= limits.max_sandboxes:
            return "sandboxes"
        if limits.capacity and self.resources is not None:
            used_cpus = sum(c for c, _ in self.held.values())
            if used_cpus + cpus > round(self.resources.cpus * NANO):
                return "cpus"
            used_memory = sum(m for _, m in self.held.values())
            if self.resources.memory and used_memory + memory > self.resources.memory:
                return "memory"
        return ""

    def load(self) -> dict[str, float | int]:
        """The host-wide counts, as `HostFull` details carry them."""
        resources = self.resources
        return {
            "cpus": sum(c for c, _ in self.held.values()) / NANO,
            "memory": sum(m for _, m in self.held.values()),
            "sandboxes": len(self.held),
            "starting": len(self.starting),
            "max_starts": self.limits.max_starts,
            "max_sandboxes": self.limits.max_sandboxes,
            "capacity_cpus": resources.cpus if resources and self.limits.capacity else 0.0,
            "capacity_memory": resources.memory if resources and self.limits.capacity else 0,
        }

    def released(self, sandbox_id: str) -> None:
        """A sandbox was removed through this agent: its room is free now."""
        self.held.pop(sandbox_id, None)
        if self._recent is not None:
            self._recent.discard(sandbox_id)

    # ------------------------------------------------------------------ the async side

    @asynccontextmanager
    async def admit(
        self, runtime: ContainerRuntime, sandbox_id: str, spec: SandboxSpec
    ) -> AsyncIterator[None]:
        """Hold a start slot and the sandbox's room while the block creates it, or raise
        `HostFull`; the room stays held if the block succeeds."""
        if sandbox_id in self.held:  # a retry, or an id that exists: the runtime decides
            yield
            return
        if self.resources is None:
            self.resources = await runtime.engine_resources()
        if self._listed_at is None:
            await self._relist(runtime, time.monotonic())
        cpus, memory = _demand(spec)
        full = "" if sandbox_id in self.held else self.full(cpus, memory)
        if full and time.monotonic() - (self._listed_at or 0.0) >= RELIST_EVERY:
            await self._relist(runtime, time.monotonic())
            full = self.full(cpus, memory)
        if sandbox_id in self.held:  # on the host (found by a listing), or a concurrent create
            yield
            return
        if full:
            self.refusals[full] += 1
            raise self._refusal(runtime.host_id, sandbox_id, full)
        self.held[sandbox_id] = (cpus, memory)
        self.starting.add(sandbox_id)
        self.peak_starting = max(self.peak_starting, len(self.starting))
        self.peak_held = max(self.peak_held, len(self.held))
        if self._recent is not None:
            self._recent.add(sandbox_id)
        made = False
        try:
            yield
            made = True
        finally:
            self.starting.discard(sandbox_id)
            if not made:
                self.released(sandbox_id)

    async def _relist(self, runtime: ContainerRuntime, asked: float) -> None:
        """Count every sandbox the engine lists for this host, and the creates in flight (one
        listing at a time; none if one began after `asked`)."""
        async with self._listing:
            if self._listed_at is not None and self._listed_at >= asked:
                return
            await self._list(runtime)

    async def _list(self, runtime: ContainerRuntime) -> None:
        began = time.monotonic()
        self._recent = set(self.starting)
        try:
            infos = await runtime.list_sandboxes()
            if self.leased_only:
                infos = [i for i in infos if i.labels.get(LABEL_LEASED) == "1"]
            found = {info.sandbox_id: _demand(info.spec) for info in infos}
            for sandbox_id in self._recent:  # in flight, or made while the engine listed
                if sandbox_id in self.held:
                    found[sandbox_id] = self.held[sandbox_id]
            self.held = found
            self._listed_at = began
        finally:
            self._recent = None

    def _refusal(self, host_id: str, sandbox_id: str, full: str) -> HostFull:
        load = self.load()
        limits = self.limits
        why = {
            "starts": f"{load['starting']} creates in flight, its start cap (max_starts)",
            "sandboxes": f"{load['sandboxes']} sandboxes, its limit (max_sandboxes)",
            "cpus": f"{load['cpus']:g} of its {load['capacity_cpus']:g} cpus held",
            "memory": f"{load['memory']} of its {load['capacity_memory']} bytes of memory held",
        }[full]
        return HostFull(
            f"host {host_id} is full for sandbox {sandbox_id}: {why}, counting every program"
            f" that uses it ({load['sandboxes']} sandboxes, {load['starting']} of"
            f" {limits.max_starts} starts in flight); the cluster waits for room",
            host_id=host_id,
            sandbox_id=sandbox_id,
            full=full,
            **load,
        )


class AdmissionMetrics(Collector):
    """The shared admission's counts, read at scrape time (docs/metrics.md)."""

    def __init__(self, admission: HostAdmission) -> None:
        self.admission = admission

    def collect(self) -> Iterator[Metric]:
        admission = self.admission
        for name, doc, value in (
            ("starts", "Creates in flight on this host, all owners.", len(admission.starting)),
            ("starts_peak", "The most creates ever in flight at once.", admission.peak_starting),
            ("sandboxes", "Sandboxes this host holds, all owners.", len(admission.held)),
            ("sandboxes_peak", "The most sandboxes held at an admission.", admission.peak_held),
        ):
            yield GaugeMetricFamily(f"rock_admission_{name}", doc, value=value)
        refusals = CounterMetricFamily(
            "rock_admission_refusals",
            "Creates refused as HostFull, by what was full.",
            labels=["full"],
        )
        for full in ("starts", "sandboxes", "cpus", "memory"):
            refusals.add_metric([full], admission.refusals[full])
        yield refusals


__all__ = ["DEFAULT_MAX_STARTS", "AdmissionMetrics", "HostAdmission", "Limits"]
