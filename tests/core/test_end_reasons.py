"""Every end of a sandbox has a reason (`EndReason`), in its history and on `cluster.events()`.

Fake agents report ends as a real agent does (`rock_core.testing.end_sandbox`); the host loss
is the core's own decision. In virtual time, on both backends.
"""

from __future__ import annotations

import gc

import anyio
import pytest

from rock_core import (
    BadRequest,
    Cluster,
    EndReason,
    ImageNotFound,
    LifecycleEvent,
    NotFound,
    SandboxLifecycle,
    SandboxNotFound,
    SandboxSpec,
    SandboxState,
    open_cluster,
    read_ends,
)
from rock_core._end_reasons import change_end
from rock_core._event_feed import EventFeed
from rock_core._protocol import SandboxChanged
from rock_core._records import SandboxRecord
from rock_core._states import SandboxEvent
from rock_core.testing import FakeAgent, end_sandbox, open_fake_cluster
from tests.core.test_cluster_links import LINK, LeasedAgent, Switch, until
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio

R = EndReason
S = SandboxState
SPEC = SandboxSpec(image="img:1", cpus=1, memory=1 << 30)


async def next_of(events: object, sandbox_id: str, state: SandboxState) -> LifecycleEvent:
    """The next event of `sandbox_id` into `state` (earlier steps skipped)."""
    assert hasattr(events, "__anext__")
    while True:
        event: LifecycleEvent = await events.__anext__()
        if event.sandbox_id == sandbox_id and event.state is state:
            return event


# ---------------------------------------------------------------------------- the table


def test_an_end_takes_its_reason_from_what_led_to_it() -> None:
    asked = SandboxLifecycle()
    for event in (SandboxEvent.PLACE, SandboxEvent.CREATED, SandboxEvent.STOP):
        asked.fire(event, 1.0)
    assert asked.end is None  # stopping: not ended yet
    step = asked.fire(SandboxEvent.STOPPED, 2.0, "stopped")
    assert (step.end, step.exit_code, asked.end) == (R.USER, None, step)
    asked.fire(SandboxEvent.START, 3.0)
    asked.fire(SandboxEvent.CREATED, 3.0)
    assert asked.end is None  # running again: the old end is history
    failed = asked.fire(SandboxEvent.FAIL, 4.0, "the engine refused")
    assert (failed.end, asked.end) == (R.ENGINE_ERROR, failed)

    lost = SandboxLifecycle()
    lost.fire(SandboxEvent.PLACE, 1.0)
    assert lost.fire(SandboxEvent.LOSE, 2.0).end is R.HOST_LOST

    oom = SandboxLifecycle()
    for event in (SandboxEvent.PLACE, SandboxEvent.CREATED, SandboxEvent.STOP):
        oom.fire(event, 1.0)
    oom.fire(SandboxEvent.STOPPED, 2.0, "killed", R.OOM, 137)
    oom.fire(SandboxEvent.DELETE, 3.0)
    deleted = oom.fire(SandboxEvent.DELETED, 3.0)
    assert (deleted.end, deleted.exit_code) == (R.USER, None)  # the removal was asked
    assert oom.history[3].end is R.OOM and oom.history[3].exit_code == 137


def test_a_pushed_change_says_its_end_and_an_older_agent_its_cause() -> None:
    def change(state: str, cause: str, end: str = "", code: int | None = None) -> SandboxChanged:
        return SandboxChanged(sandbox_id="sb", state=state, cause=cause, end=end, exit_code=code)

    assert change_end(change("stopped", "engine", "oom", 137), None) == (R.OOM, 137)
    assert change_end(change("stopped", "engine", "from-the-future"), None) == (
        R.ENGINE_ERROR,
        None,
    )
    assert change_end(change("running", "request"), None) == (None, None)
    # An agent without "end-reasons": the cause decides.
    assert change_end(change("stopped", "idle"), None) == (R.IDLE, None)
    assert change_end(change("deleted", "lifetime"), None) == (R.LIFETIME, None)
    assert change_end(change("stopped", "request"), None) == (R.USER, None)
    assert change_end(change("stopped", "engine"), None) == (R.INIT_EXITED, None)
    assert change_end(change("deleted", "engine"), None) == (R.ENGINE_ERROR, None)
    # An auto-delete keeps the end of the stop before it.
    life = SandboxLifecycle()
    for event in (SandboxEvent.PLACE, SandboxEvent.CREATED, SandboxEvent.EXPIRE):
        life.fire(event, 1.0)
    life.fire(SandboxEvent.STOPPED, 2.0, "idle", R.IDLE)
    assert change_end(change("deleted", "auto_delete"), life.end) == (R.IDLE, None)


# ---------------------------------------------------------------------------- reported ends


@pytest.mark.parametrize(
    ("end", "code", "state"),
    [
        (R.USER, None, S.STOPPED),
        (R.IDLE, None, S.STOPPED),
        (R.LIFETIME, None, S.STOPPED),
        (R.OOM, 137, S.STOPPED),
        (R.INIT_EXITED, 3, S.STOPPED),
        (R.ENGINE_ERROR, None, S.STOPPED),
        (R.OWNER_GONE, None, S.DELETED),
        (R.LEASE_EXPIRED, None, S.DELETED),
    ],
)
async def test_each_end_an_agent_reports_is_kept_and_pushed(
    end: EndReason, code: int | None, state: SandboxState
) -> None:
    async with open_fake_cluster(1) as cluster:
        events = cluster.events()
        record = await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        agent = cluster.agents["fake-0"]
        await end_sandbox(agent, "sb-1", end, exit_code=code)
        seen = await next_of(events, "sb-1", state)
        assert (seen.end, seen.exit_code, seen.host) == (end, code, "fake-0")
        assert record.state is state
        ended = record.end
        assert ended is not None and (ended.end, ended.exit_code) == (end, code)
        assert ended.at == seen.at and record.history[-1] == ended


async def test_a_stop_and_a_delete_asked_are_the_users_and_events_come_in_order() -> None:
    async with open_fake_cluster(1) as cluster:
        events = cluster.events()
        await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        await cluster.stop_sandbox("sb-1")
        await cluster.delete_sandbox("sb-1")
        seen = []
        async for event in events:
            seen.append((event.state, event.end))
            if event.state is S.DELETED:
                break
    assert seen == [
        (S.CREATING, None),
        (S.RUNNING, None),
        (S.STOPPING, None),
        (S.STOPPED, R.USER),
        (S.DELETING, None),
        (S.DELETED, R.USER),
    ]


async def test_an_engine_error_on_create_is_recorded_as_such() -> None:
    async with open_fake_cluster(1, fail_images=["bad:1"]) as cluster:
        events = cluster.events()
        with pytest.raises(ImageNotFound, match=r"^image 'bad:1' is not on this host"):
            await cluster.create_sandbox(SandboxSpec(image="bad:1"), sandbox_id="sb-1")
        seen = await next_of(events, "sb-1", S.FAILED)
        assert seen.end is R.ENGINE_ERROR and "bad:1" in seen.reason


async def test_a_lost_host_ends_its_sandboxes_with_host_lost() -> None:
    agent = LeasedAgent()
    switch = Switch(agent)
    async with open_cluster([switch], LINK) as cluster:
        events = cluster.events()
        record = await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        switch.refusing = True
        await agent.disconnect()
        seen = await next_of(events, "sb-1", S.LOST)
        assert (seen.end, seen.host) == (R.HOST_LOST, "fake-host")
        assert record.end is not None and record.end.end is R.HOST_LOST
        switch.refusing = False
        await until(lambda: record.state is S.RUNNING)
        assert record.end is None  # found running again: not ended


async def test_the_agent_refuses_a_host_loss_and_an_unknown_sandbox() -> None:
    async with open_fake_cluster(1) as cluster:
        await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        agent = cluster.agents["fake-0"]
        with pytest.raises(BadRequest, match=r"^an agent never reports host_lost"):
            await end_sandbox(agent, "sb-1", R.HOST_LOST)
        with pytest.raises(SandboxNotFound, match=r"^no sandbox 'sb-9' on host fake-0$"):
            await end_sandbox(agent, "sb-9", R.OOM)


# ---------------------------------------------------------------------------- subscribers


async def test_events_end_when_the_cluster_closes() -> None:
    async with open_fake_cluster(1) as cluster:
        events = cluster.events()
        await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
    # The cluster deleted its sandbox on the way out: that is seen, then the iteration ends.
    states = [event.state async for event in events]
    assert states[-1] is S.DELETED and states[0] is S.CREATING
    late = cluster.events()
    assert [event async for event in late] == []  # subscribed after the close: nothing


async def test_a_slow_subscriber_loses_the_oldest_and_is_told_how_many() -> None:
    feed = EventFeed()
    slow = feed.subscribe(buffer=2)
    record = SandboxRecord("sb-1", SPEC, on_step=feed.publish)
    for event in (SandboxEvent.PLACE, SandboxEvent.CREATED, SandboxEvent.STOP):
        record.fire(event)
    record.fire(SandboxEvent.STOPPED)
    feed.close()
    got = [(event.state, event.missed) async for event in slow]
    assert got == [(S.STOPPING, 2), (S.STOPPED, 0)]


async def test_a_subscriber_that_leaves_leaves_nothing_behind() -> None:
    async with open_fake_cluster(1) as cluster:
        feed = cluster.state.feed
        events = cluster.events()
        await cluster.create_sandbox(SPEC, sandbox_id="sb-1")
        async for _ in events:
            break
        del events
        gc.collect()
        assert feed.subscribers == 0
        closed = cluster.events()
        await closed.aclose()
        assert feed.subscribers == 0 and [e async for e in closed] == []
        with anyio.move_on_after(1) as scope:  # a subscriber cancelled while it waits: no task
            async for _ in cluster.events():
                pass
        assert scope.cancelled_caught
    assert feed.subscribers == 0 and feed.closed


async def test_a_buffer_under_one_event_is_refused() -> None:
    async with open_fake_cluster(1) as cluster:
        with pytest.raises(BadRequest, match=r"^an event buffer holds at least 1 event, not 0$"):
            cluster.events(buffer=0)


def test_records_without_a_feed_take_steps_too() -> None:
    record = SandboxRecord("sb-1", SPEC)
    record.fire(SandboxEvent.PLACE)
    assert record.end is None and isinstance(record, SandboxRecord)
    assert Cluster.events.__doc__ and FakeAgent.__doc__


async def test_reading_the_ends_of_an_agent_without_the_log_says_so() -> None:
    async with open_fake_cluster(1) as cluster:
        with pytest.raises(BadRequest, match=r"^host fake-0: the agent of host fake-0 .* cannot"):
            await read_ends(cluster)
        with pytest.raises(NotFound, match=r"^no host 'nope' in this cluster \(hosts: fake-0\)$"):
            await read_ends(cluster, ["nope"])
