"""The sans-IO scheduler against a plain model: random events, no host over-committed, no
request lost, `startable` as the model computes it."""

from __future__ import annotations

import math

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from rock_core._errors import CapacityError
from rock_core._scheduler import (
    Demand,
    Place,
    Resources,
    Scheduler,
)

from .scheduler_kit import GiB

# ------------------------------------------------------------------- property: a model


class SchedulerModel(RuleBasedStateMachine):
    """Random events against a plain model: no host over-committed, no request lost.

    Cpus are whole quarters, exact in floats, so the model's sums are exact.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sched = Scheduler()
        self.hosts: dict[str, tuple[Resources, int]] = {}  # capacity, max_starts
        self.draining: set[str] = set()
        self.demands: dict[str, Demand] = {}
        self.queued: list[str] = []  # in submission order
        self.starting: dict[str, str] = {}  # request -> host
        self.running: dict[str, str] = {}
        self.next_id = 0

    @initialize(
        policy=st.sampled_from(["spread", "binpack"]),
        max_queue=st.sampled_from([0, 2, 1000]),
        max_bypass=st.sampled_from([0, 1, 32]),
    )
    def setup(self, policy: str, max_queue: int, max_bypass: int) -> None:
        self.sched = Scheduler(policy, max_queue, max_bypass=max_bypass)  # type: ignore[arg-type]

    # -- helpers

    def placed(self) -> dict[str, str]:
        return {**self.starting, **self.running}

    def apply(self, actions: list[Place]) -> None:
        for action in actions:
            assert action.request_id in self.queued, action
            assert action.host_id in self.hosts and action.host_id not in self.draining
            self.queued.remove(action.request_id)
            self.starting[action.request_id] = action.host_id

    def free(self, host_id: str) -> tuple[float, int, float, int]:
        """Free cpus, memory, sandbox slots (inf = no limit) and start slots on a host."""
        capacity, max_starts = self.hosts[host_id]
        on_host = [r for r, h in self.placed().items() if h == host_id]
        return (
            capacity.cpus - sum(self.demands[r].cpus for r in on_host),
            capacity.memory - sum(self.demands[r].memory for r in on_host),
            capacity.sandboxes - len(on_host) if capacity.sandboxes else math.inf,
            max_starts - sum(1 for r, h in self.starting.items() if h == host_id),
        )

    # -- rules

    @rule(
        host_id=st.sampled_from(["h0", "h1", "h2", "h3"]),
        cpus=st.sampled_from([1, 2, 4]),
        memory=st.sampled_from([2, 4, 8]),
        sandboxes=st.sampled_from([0, 1, 3]),
        max_starts=st.sampled_from([1, 2, 8]),
    )
    def add_host(
        self, host_id: str, cpus: int, memory: int, sandboxes: int, max_starts: int
    ) -> None:
        if host_id in self.hosts:
            return
        capacity = Resources(cpus, memory * GiB, sandboxes)
        self.hosts[host_id] = (capacity, max_starts)
        self.apply(self.sched.add_host(host_id, capacity, max_starts=max_starts))

    @precondition(lambda self: self.hosts)
    @rule(data=st.data())
    def remove_host(self, data: st.DataObject) -> None:
        host_id = data.draw(st.sampled_from(sorted(self.hosts)))
        on_host = sorted(r for r, h in self.placed().items() if h == host_id)
        assert self.sched.remove_host(host_id) == on_host
        del self.hosts[host_id]
        self.draining.discard(host_id)
        for request_id in on_host:
            self.starting.pop(request_id, None)
            self.running.pop(request_id, None)

    @precondition(lambda self: self.hosts)
    @rule(data=st.data())
    def toggle_drain(self, data: st.DataObject) -> None:
        host_id = data.draw(st.sampled_from(sorted(self.hosts)))
        self.draining ^= {host_id}
        self.apply(self.sched.drain_host(host_id, host_id in self.draining))

    @rule(
        cpus=st.sampled_from([0, 0.25, 0.5, 1, 2, 3, 5]),
        memory=st.sampled_from([0, 1, 2, 4, 16]),
        image=st.sampled_from(["", "a", "b"]),
    )
    def submit(self, cpus: float, memory: int, image: str) -> None:
        request_id = f"r{self.next_id}"
        self.next_id += 1
        demand = Demand(cpus, memory * GiB, image)
        self.demands[request_id] = demand
        holdable = any(
            c.cpus >= demand.cpus and c.memory >= demand.memory for c, _ in self.hosts.values()
        )
        self.queued.append(request_id)
        try:
            actions = self.sched.submit(request_id, demand, now=self.next_id)
        except CapacityError as exc:
            self.queued.remove(request_id)
            if holdable:
                assert str(exc).startswith("queue full")
            else:
                assert str(exc).startswith(f"no host can ever hold request '{request_id}'")
            return
        assert holdable
        self.apply(actions)

    @precondition(lambda self: self.starting)
    @rule(data=st.data(), ok=st.booleans())
    def start_finished(self, data: st.DataObject, ok: bool) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.starting)))
        host_id = self.starting.pop(request_id)
        if ok:
            self.running[request_id] = host_id
            self.apply(self.sched.started(request_id, now=self.next_id))
        else:
            self.apply(self.sched.start_failed(request_id, now=self.next_id))

    @precondition(lambda self: self.starting or self.running)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.placed())))
        self.starting.pop(request_id, None)
        self.running.pop(request_id, None)
        self.apply(self.sched.release(request_id, now=self.next_id))

    @precondition(lambda self: self.queued)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        request_id = data.draw(st.sampled_from(self.queued))
        self.queued.remove(request_id)
        self.apply(self.sched.cancel(request_id))

    # -- invariants

    @invariant()
    def no_host_is_over_committed(self) -> None:
        for host_id in self.hosts:
            cpus, memory, sandboxes, starts = self.free(host_id)
            assert cpus >= 0 and memory >= 0 and sandboxes >= 0 and starts >= 0

    @invariant()
    def statistics_agree_with_the_model(self) -> None:
        stats = self.sched.statistics()
        assert (stats.queue_depth, stats.placed, stats.starting) == (
            len(self.queued),
            len(self.placed()),
            len(self.starting),
        )
        assert [h.host_id for h in stats.hosts] == sorted(self.hosts)
        for host in stats.hosts:
            capacity, max_starts = self.hosts[host.host_id]
            cpus, memory, _, starts = self.free(host.host_id)
            assert host.used.cpus == pytest.approx(capacity.cpus - cpus, abs=1e-9)
            assert host.used.memory == capacity.memory - memory
            assert host.starting == max_starts - starts
            assert host.draining == (host.host_id in self.draining)

    @invariant()
    def the_oldest_waiting_request_fits_nowhere(self) -> None:
        if not self.queued:
            return
        demand = self.demands[self.queued[0]]
        for host_id in set(self.hosts) - self.draining:
            cpus, memory, sandboxes, starts = self.free(host_id)
            fits = cpus >= demand.cpus and memory >= demand.memory
            assert not (fits and sandboxes > 0 and starts > 0), (
                self.queued[0],
                host_id,
            )

    @invariant()
    def startable_is_the_room_the_model_sees(self) -> None:
        for demand in (Demand(0, 0), Demand(1, 2 * GiB), Demand(0.5, 0), Demand(0, GiB)):
            expected = 0
            if not self.queued:  # anyone waiting: nothing is startable
                for host_id in set(self.hosts) - self.draining:
                    cpus, memory, sandboxes, starts = self.free(host_id)
                    room = [starts, sandboxes]
                    if demand.cpus:
                        room.append(cpus // demand.cpus)
                    if demand.memory:
                        room.append(memory // demand.memory)
                    expected += max(0, int(min(room)))
            assert self.sched.startable(demand) == expected, demand

    def teardown(self) -> None:
        """Given room, every waiting request is eventually placed: none was lost."""
        if not self.queued:
            return
        self.add_host("rescue", 8, 32, 0, 8)
        for host_id in sorted(self.draining):
            self.draining.discard(host_id)  # before applying: it may place there at once
            self.apply(self.sched.drain_host(host_id, False))
        while self.queued:
            waiting = len(self.queued)
            for request_id in sorted(self.placed()):
                self.starting.pop(request_id, None)
                self.running.pop(request_id, None)
                self.apply(self.sched.release(request_id, now=self.next_id))
            assert len(self.queued) < waiting


SchedulerModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_scheduler_model = SchedulerModel.TestCase
