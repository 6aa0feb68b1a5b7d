"""Lifecycle from outside and under failure: `rock status|stop|restart|rm`, and a retried create.

The CLI runs as its own process (its own core and local agent) on sandboxes this test process
owns, as a user would on a training job's sandboxes: ownership stays with the test, and the
test's records follow what the CLI did (the owner's agent reports it). The retried create runs
against a socket agent behind a proxy that loses the create's reply.
"""

from __future__ import annotations

import json
import re
import sys

import anyio
import pytest

from rock_core import (
    Cluster,
    HostUnavailable,
    SandboxNotFound,
    SandboxState,
    TransportError,
    open_cluster,
)
from rock_sdk import Sandbox, SandboxConfig

from ..conftest import SH_IMAGE
from . import test_timeouts
from .test_leases import SocketAgent, wait_for
from .test_timeouts import FAST, LinkProxy, engine_state, events, wait_state

# The socket agent and the proxy in front of it, as test_timeouts makes them.
socket_agent = test_timeouts.socket_agent
proxy = test_timeouts.proxy

pytestmark = pytest.mark.anyio

S = SandboxState
EXIT_ERROR = 125


async def rock(*args: str) -> tuple[int, str, str]:
    result = await anyio.run_process([sys.executable, "-m", "rock_sdk._cli", *args], check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def start(cluster: Cluster, **options: object) -> Sandbox:
    sb = Sandbox(SandboxConfig(image=SH_IMAGE, memory="64m", **options), cluster=cluster)  # type: ignore[arg-type]
    await sb.start()
    return sb


async def test_status_shows_state_host_deadlines_and_history(cluster: Cluster) -> None:
    sb = await start(cluster, idle_timeout=300, lifetime=3600, auto_delete_after=600)
    try:
        await anyio.sleep(1.5)  # the owner's agent writes uses to the host's record each second
        code, out, err = await rock("status", sb.sandbox_id)
        assert (code, err) == (0, "")
        lines = dict(line.split(None, 1) for line in out.splitlines() if not line.startswith(" "))
        assert lines["sandbox"] == sb.sandbox_id
        assert lines["state"] == "running"
        assert lines["host"] == cluster.record(sb.sandbox_id).host
        assert lines["owner"] == cluster.owner
        assert lines["idle"].startswith("5 min; runs out ")
        assert re.fullmatch(r"60 min; ends [-\d]+ [:\d]+ \(in (59\.\d|60) min\)", lines["lifetime"])
        assert lines["on"] == "expire   stop"
        assert lines["auto-delete"] == "10 min after a stop"
        history = [line.split()[-1] for line in out.splitlines() if line.startswith("  ")]
        assert history == ["created", "started"]

        code, out, _ = await rock("status", "--json", sb.sandbox_id)
        report = json.loads(out)
        assert code == 0 and report["sandbox_id"] == sb.sandbox_id
        assert report["host"] == cluster.record(sb.sandbox_id).host
        d = report["deadlines"]
        assert (d["idle_timeout"], d["lifetime"], d["auto_delete_after"]) == (300, 3600, 600)
        assert d["lifetime_at"] == pytest.approx(d["started_at"] + 3600)
        assert d["idle_at"] == pytest.approx(d["last_used"] + 300)
    finally:
        await sb.delete()


async def test_status_of_an_unknown_sandbox_is_a_clear_error(cluster: Cluster) -> None:
    code, out, err = await rock("status", "sb-no-such-one")
    assert (code, out) == (EXIT_ERROR, "")
    assert err == "rock status: no sandbox 'sb-no-such-one' on any host\n"


async def test_stop_restart_and_rm_by_id_and_the_owner_follows(cluster: Cluster) -> None:
    sb = await start(cluster)
    record = cluster.record(sb.sandbox_id)
    container = record.info.container_id  # type: ignore[union-attr]
    await sb.write_file("/keep/me", "kept")

    assert await rock("stop", sb.sandbox_id) == (0, f"{sb.sandbox_id}\n", "")
    await wait_state(record, S.STOPPED, 10)
    assert await engine_state(container) == "exited"
    assert events(record)[-2:] == ["stop", "stopped"]
    assert "not at its owner's request" in record.history[-1].reason
    assert await rock("stop", sb.sandbox_id) == (0, f"{sb.sandbox_id}\n", ""), "idempotent"

    assert await rock("restart", sb.sandbox_id) == (0, f"{sb.sandbox_id}\n", "")
    await wait_state(record, S.RUNNING, 10)
    assert events(record)[-2:] == ["start", "created"]
    assert (await sb.arun("cat /keep/me")).output == "kept"  # files kept; a new session
    assert await rock("restart", sb.sandbox_id) == (0, f"{sb.sandbox_id}\n", "")
    assert (await sb.arun("echo again")).output == "again\n"

    assert await rock("rm", sb.sandbox_id) == (0, f"{sb.sandbox_id}\n", "")
    await wait_state(record, S.DELETED, 10)
    assert record.history[-1].reason == "removed by another program"
    assert await engine_state(container) == "removed"
    code, _, err = await rock("rm", sb.sandbox_id)
    assert (code, err) == (EXIT_ERROR, f"rock rm: no sandbox {sb.sandbox_id!r} on any host\n")
    await sb.delete()  # deleting a deleted sandbox is fine


async def test_stop_and_restart_of_unknown_ids_fail_clearly_but_do_the_others(
    cluster: Cluster,
) -> None:
    sb = await start(cluster)
    try:
        code, out, err = await rock("stop", "sb-nope-1", sb.sandbox_id)
        assert (code, out) == (EXIT_ERROR, f"{sb.sandbox_id}\n")
        assert err == "rock stop: no sandbox 'sb-nope-1' on any host\n"
        code, out, err = await rock("restart", "sb-nope-2")
        assert (code, out, err) == (
            EXIT_ERROR,
            "",
            "rock restart: no sandbox 'sb-nope-2' on any host\n",
        )
        await wait_state(cluster.record(sb.sandbox_id), S.STOPPED, 10)
    finally:
        await sb.delete()


async def test_a_stop_by_the_cli_starts_the_auto_delete_clock(cluster: Cluster) -> None:
    sb = await start(cluster, auto_delete_after=1.5)
    record = cluster.record(sb.sandbox_id)
    assert (await rock("stop", sb.sandbox_id))[0] == 0
    await wait_state(record, S.DELETED, 10)
    assert events(record)[2:] == ["stop", "stopped", "delete", "deleted"]
    assert record.history[-1].reason == "auto-delete 1.5 s after it stopped"
    assert 1.2 <= record.history[-1].at - record.history[3].at <= 1.5 + 2.5


async def test_sdk_lifecycle_is_idempotent_and_restart_follows_an_expiry(cluster: Cluster) -> None:
    sb = await start(cluster, lifetime=1.5)
    record = cluster.record(sb.sandbox_id)
    await sb.write_file("/keep/me", "kept")
    await wait_state(record, S.STOPPED, 5)
    await sb.stop()  # stopping a stopped sandbox is fine
    await sb.restart()  # back, with its files; its lifetime counts from this start
    assert record.state is S.RUNNING
    assert await sb.read_file("/keep/me") == b"kept"
    deadlines = (await sb.status()).deadlines
    assert deadlines is not None and deadlines.started_at is not None
    assert deadlines.lifetime_at == pytest.approx(deadlines.started_at + 1.5)
    assert deadlines.started_at > record.history[2].at
    await wait_state(record, S.STOPPED, 5)
    await sb.delete()
    await sb.delete()
    with pytest.raises(SandboxNotFound, match=r"^no sandbox 'sb-never' in this cluster$"):
        await cluster.delete_sandbox("sb-never")


# ---------------------------------------------------------------------------- retried create


async def test_a_create_retried_after_its_reply_was_lost_returns_the_same_sandbox(
    socket_agent: SocketAgent, proxy: LinkProxy
) -> None:
    spec = SandboxConfig(image=SH_IMAGE, memory="64m").to_spec()
    async with open_cluster([proxy.address], lease=30, **FAST) as cluster:
        host = cluster.hosts[socket_agent.host_id]
        proxy.blocked = True  # once cut, the link stays down until the test lets it back
        proxy.drop_reply = True
        with pytest.raises(TransportError, match=r"closed the connection|stream from peer broke"):
            await cluster.create_sandbox(spec, sandbox_id="retry-lost-reply")
        (lost,) = proxy.dropped
        made = lost.sandbox.container_id
        assert socket_agent.containers() == [made[:12]], "the agent did make it"
        record = cluster.record("retry-lost-reply")
        assert record.state is S.FAILED and record.retryable
        assert events(record) == ["place", "create_failed"]

        await wait_for(lambda: host.state != "connected", 10, "link loss noticed")
        with pytest.raises(HostUnavailable, match=r"^host .* is reconnecting: its link has been"):
            await cluster.create_sandbox(spec, sandbox_id="retry-lost-reply")

        proxy.blocked = False
        await wait_for(lambda: host.state == "connected", 30, "reconnected")
        assert socket_agent.containers() == [made[:12]], "reconciling kept it for the retry"
        again = await cluster.create_sandbox(spec, sandbox_id="retry-lost-reply")
        assert again.state is S.RUNNING
        assert again.info is not None and again.info.container_id == made
        assert socket_agent.containers() == [made[:12]], "never a second container"
        assert again.history[0].reason.startswith(f"create retried on {socket_agent.host_id}")
        assert await cluster.create_sandbox(spec, sandbox_id="retry-lost-reply") is again
        assert cluster.statistics().hosts[0].used.sandboxes == 1
        sb = Sandbox.attach(cluster, "retry-lost-reply")
        assert (await sb.arun("echo same")).output == "same\n"
    assert socket_agent.containers() == []


async def test_a_lost_create_without_a_chosen_id_leaves_nothing_behind(
    socket_agent: SocketAgent, proxy: LinkProxy
) -> None:
    spec = SandboxConfig(image=SH_IMAGE, memory="64m").to_spec()
    async with open_cluster([proxy.address], lease=30, **FAST) as cluster:
        host = cluster.hosts[socket_agent.host_id]
        proxy.drop_reply = True
        with pytest.raises(TransportError):
            await cluster.create_sandbox(spec)
        assert len(socket_agent.containers()) == 1
        await wait_for(lambda: host.state == "connected" and host.generation >= 1, 30, "back")
        # Nobody can retry a create whose id it never learnt: reconciling removes it.
        await wait_for(lambda: not socket_agent.containers(), 15, "removed")
        (record,) = cluster.records()
        assert not record.chosen_id
        await wait_state(record, S.DELETED, 10)
        assert record.history[-2].reason == "leftover of a failed create"
