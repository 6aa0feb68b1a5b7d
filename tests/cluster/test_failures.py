"""A cluster of three namespace hosts over real SSH, with faults injected.

Each host has its own address, sshd and (on-demand) agent; they share the Docker engine but
each agent manages only containers labelled with its own host id. The core's timings are
shortened so failures show within seconds: heartbeat 0.3 s, answer within 1 s, grace 3 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from rock_core import HostUnavailable, SandboxLost, SandboxState, SshOptions
from rock_sdk import SandboxCluster, SandboxConfig, open_cluster

from ..conftest import SH_IMAGE
from ._netns import NetnsCluster, NetnsHost

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"heartbeat": 0.3, "heartbeat_timeout": 1.0, "grace": 3.0, "lease": 30.0}
SMALL = SandboxConfig(image=SH_IMAGE, memory="32m", cpus=0.1)
AGENT = "rock_agent serve --socket"


def ssh_options(netns: NetnsCluster) -> SshOptions:
    return SshOptions(
        known_hosts=str(netns.known_hosts), client_keys=[str(netns.client_key)], connect_timeout=3
    )


def containers_on(host: NetnsHost) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=rock.host={host.host_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await anyio.sleep(0.05)


def host_of(cluster: SandboxCluster, host: NetnsHost) -> str:
    return cluster.hosts[host.host_id].state


async def test_sandboxes_spread_evenly_over_three_hosts(netns_hosts: NetnsCluster) -> None:
    hosts = [h.url for h in netns_hosts]
    async with open_cluster(hosts, ssh=ssh_options(netns_hosts), **FAST) as cluster:
        assert sorted(cluster.hosts) == sorted(h.host_id for h in netns_hosts)
        sandboxes = [await cluster.create_sandbox(SMALL) for _ in range(6)]
        placed = Counter([(await sb.status()).host for sb in sandboxes])
        assert sorted(placed.values()) == [2, 2, 2], placed
        for host in netns_hosts:
            assert len(containers_on(host)) == 2
        for sb in sandboxes:
            assert (await sb.arun("echo ok")).output == "ok\n"
    for host in netns_hosts:
        assert containers_on(host) == []


async def test_a_killed_agent_is_restarted_and_adopts_its_sandboxes(
    netns_hosts: NetnsCluster,
) -> None:
    h1 = netns_hosts["h1"]
    async with open_cluster([h1.url], ssh=ssh_options(netns_hosts), **FAST) as cluster:
        sb = await cluster.create_sandbox(SMALL)
        await sb.arun("echo before > /tmp/mark")
        assert h1.kill_processes(AGENT) == 1
        await wait_for(lambda: host_of(cluster, h1) != "connected", 10, "loss noticed")
        # Reconnecting runs `rock-agent ensure` again, which starts a new agent.
        await wait_for(lambda: host_of(cluster, h1) == "connected", 30, "reconnected")
        assert len(h1.pids_of(AGENT)) == 1
        assert sb.state is SandboxState.RUNNING
        assert (await sb.arun("cat /tmp/mark")).output == "before\n"


async def test_a_short_outage_is_survived(netns_hosts: NetnsCluster) -> None:
    h2 = netns_hosts["h2"]
    hosts = [h.url for h in netns_hosts]
    options: dict[str, Any] = {**FAST, "grace": 60.0}
    async with open_cluster(hosts, ssh=ssh_options(netns_hosts), **options) as cluster:
        sandboxes = [await cluster.create_sandbox(SMALL) for _ in range(3)]
        on_h2 = [sb for sb in sandboxes if (await sb.status()).host == h2.host_id]
        assert len(on_h2) == 1
        h2.link_down()
        try:
            await wait_for(lambda: host_of(cluster, h2) == "reconnecting", 10, "loss noticed")
            with pytest.raises(HostUnavailable, match=f"host {h2.host_id} is reconnecting"):
                await on_h2[0].arun("true")
            # New sandboxes go elsewhere while h2 is away.
            extra = await cluster.create_sandbox(SMALL)
            assert (await extra.status()).host != h2.host_id
        finally:
            h2.link_up()
        await wait_for(lambda: host_of(cluster, h2) == "connected", 40, "reconnected")
        assert on_h2[0].state is SandboxState.RUNNING
        assert (await on_h2[0].arun("echo back")).output == "back\n"


async def test_a_host_away_past_grace_is_lost_then_reconciled(
    netns_hosts: NetnsCluster,
) -> None:
    h3 = netns_hosts["h3"]
    async with open_cluster([h3.url], ssh=ssh_options(netns_hosts), **FAST) as cluster:
        sb = await cluster.create_sandbox(SMALL)
        h3.link_down()
        try:
            await wait_for(lambda: sb.state is SandboxState.LOST, 15, "marked lost")
            assert cluster.statistics().hosts == ()
            with pytest.raises(SandboxLost, match=f"host {h3.host_id} has been unreachable"):
                await sb.arun("true")
        finally:
            h3.link_up()
        await wait_for(lambda: sb.state is SandboxState.RUNNING, 40, "found again")
        assert [t.event.value for t in (await sb.status()).history][-2:] == [
            "lose",
            "found_running",
        ]
        assert cluster.statistics().hosts[0].used.sandboxes == 1


PROGRAM = textwrap.dedent(
    """
    import sys, anyio
    from rock_sdk import SandboxConfig, SshOptions, open_cluster

    async def main():
        hosts, known, key, owner = sys.argv[1].split(","), sys.argv[2], sys.argv[3], sys.argv[4]
        ssh = SshOptions(known_hosts=known, client_keys=[key])
        config = SandboxConfig(image=sys.argv[5], memory="32m", cpus=0.1)
        lease = float(sys.argv[6])
        fast = {"lease": lease, "heartbeat": 0.5, "heartbeat_timeout": 1.0}
        async with open_cluster(hosts, ssh=ssh, owner=owner or None, **fast) as cluster:
            for _ in range(3):
                sb = await cluster.create_sandbox(config)
                print(sb.sandbox_id, flush=True)
            await anyio.sleep(3600)

    anyio.run(main)
    """
)


def start_program(
    netns: NetnsCluster, owner: str = "", lease: float = 3.0
) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PROGRAM,
            ",".join(h.url for h in netns),
            str(netns.known_hosts),
            str(netns.client_key),
            owner,
            SH_IMAGE,
            str(lease),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ids = [proc.stdout.readline().strip() for _ in range(3)]
    assert all(i.startswith("sb-") for i in ids), ids
    return proc, ids


def running(sandbox_ids: list[str]) -> list[str]:
    found = []
    for sandbox_id in sandbox_ids:
        out = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=rock.sandbox={sandbox_id}"],
            capture_output=True,
            text=True,
            check=True,
        )
        found += out.stdout.split()
    return found


async def test_a_killed_program_leaks_nothing(netns_hosts: NetnsCluster) -> None:
    proc, ids = start_program(netns_hosts)
    assert len(running(ids)) == 3
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()
    # Its agents stop hearing from it; when its 3 s lease ends they remove its sandboxes.
    await wait_for(lambda: not running(ids), 30, "sandboxes of the killed program reaped")


async def test_a_program_back_within_its_lease_adopts_its_sandboxes(
    netns_hosts: NetnsCluster,
) -> None:
    owner = f"remote:test-run-{os.getpid()}-{time.monotonic_ns()}"
    proc, ids = start_program(netns_hosts, owner, lease=60.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()
    hosts = [h.url for h in netns_hosts]
    async with open_cluster(
        hosts, ssh=ssh_options(netns_hosts), owner=owner, lease=30.0, heartbeat=0.3
    ) as cluster:
        adopted = {sb.sandbox_id: sb for sb in cluster.sandboxes()}
        assert sorted(adopted) == sorted(ids)
        for sb in adopted.values():
            assert sb.state is SandboxState.RUNNING
            assert (await sb.arun("echo mine")).output == "mine\n"
    assert not running(ids)
