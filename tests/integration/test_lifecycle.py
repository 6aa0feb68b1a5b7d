"""Sandbox lifecycle, limits, safe defaults and error paths against the real engine."""

from __future__ import annotations

import json
import math
import re

import anyio
import pytest

from rock_core import Cluster
from rock_sdk import (
    AlreadyExists,
    BadRequest,
    CapacityError,
    ImageNotFound,
    Sandbox,
    SandboxConfig,
    SandboxNotFound,
    SandboxState,
    SessionNotFound,
)
from rock_sdk import open_cluster as open_sdk_cluster

from ..conftest import PY_IMAGE, SH_IMAGE

pytestmark = pytest.mark.anyio


async def inspect(container_id: str) -> dict:  # type: ignore[type-arg]
    out = (await anyio.run_process(["docker", "inspect", container_id])).stdout
    return json.loads(out)[0]  # type: ignore[no-any-return]


async def test_stop_start_delete_with_history(cluster: Cluster) -> None:
    sb = Sandbox(SandboxConfig(image=SH_IMAGE), cluster=cluster)
    await sb.start()
    await sb.write_file("/keep/me.txt", b"kept")
    await sb.create_session("s")
    await sb.stop()
    await sb.stop()  # idempotent
    status = await sb.status()
    assert status.state is SandboxState.STOPPED
    await sb.start()
    assert await sb.read_file("/keep/me.txt") == b"kept"  # files survive a restart
    with pytest.raises(SessionNotFound):  # sessions do not
        await sb.arun("true", session="s")
    await sb.restart()
    status = await sb.status()
    assert status.is_running
    await sb.delete()
    await sb.delete()  # idempotent
    steps = [(t.from_state.value, t.to_state.value) for t in (await sb.status()).history]
    assert steps == [
        ("pending", "creating"),
        ("creating", "running"),
        ("running", "stopping"),
        ("stopping", "stopped"),
        ("stopped", "creating"),
        ("creating", "running"),
        ("running", "stopping"),
        ("stopping", "stopped"),
        ("stopped", "creating"),
        ("creating", "running"),
        ("running", "deleting"),
        ("deleting", "deleted"),
    ]
    assert all(t.at > 0 and t.reason for t in (await sb.status()).history)


async def test_limits_and_safe_defaults_reach_the_engine(cluster: Cluster) -> None:
    config = SandboxConfig(
        image=SH_IMAGE, cpus=0.5, memory="96m", pids=77, env={"A": "1"}, workdir="/tmp"
    )
    async with Sandbox(config, cluster=cluster) as sb:
        attrs = await inspect((await sb.status()).info.container_id)  # type: ignore[union-attr]
        host = attrs["HostConfig"]
        assert host["NanoCpus"] == 500_000_000
        assert host["Memory"] == 96 << 20
        assert host["MemorySwap"] == 96 << 20
        assert host["PidsLimit"] == 77
        assert host["Init"] is True
        assert host["Privileged"] is False
        assert host["CapDrop"] == ["ALL"]
        assert "SYS_ADMIN" not in host["CapAdd"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["NetworkMode"] == "none"
        labels = attrs["Config"]["Labels"]
        assert labels["rock.sandbox"] == sb.sandbox_id
        assert labels["rock.owner"] == cluster.owner
        assert float(labels["rock.created"]) > 0
        r = await sb.arun("pwd; echo $A; ls /sys/class/net")
        assert r.output == "/tmp\n1\nlo\n"


async def test_network_when_asked(cluster: Cluster) -> None:
    async with Sandbox(SandboxConfig(image=SH_IMAGE, network=True), cluster=cluster) as sb:
        r = await sb.arun("ls /sys/class/net | sort")
        assert r.output == "eth0\nlo\n"


async def test_pids_limit_holds(cluster: Cluster) -> None:
    async with Sandbox(SandboxConfig(image=SH_IMAGE, pids=20), cluster=cluster) as sb:
        r = await sb.arun("for i in $(seq 40); do sleep 5 & done 2>&1; wait", timeout=20)
        assert "can't fork" in r.output or "Resource temporarily unavailable" in r.output


async def test_caller_chosen_id_makes_create_idempotent(cluster: Cluster) -> None:
    spec = SandboxConfig(image=SH_IMAGE).to_spec()
    first = await cluster.create_sandbox(spec, sandbox_id="retry-me-1")
    again = await cluster.create_sandbox(spec, sandbox_id="retry-me-1")
    assert again is first
    found = [i for i in await cluster.list_host_sandboxes() if i.sandbox_id == "retry-me-1"]
    assert len(found) == 1
    other = SandboxConfig(image=SH_IMAGE, cpus=2).to_spec()
    with pytest.raises(AlreadyExists, match="sandbox 'retry-me-1' already exists"):
        await cluster.create_sandbox(other, sandbox_id="retry-me-1")
    await cluster.delete_sandbox("retry-me-1")


async def test_missing_image_fails_fast_and_clearly(cluster: Cluster) -> None:
    with pytest.raises(ImageNotFound, match="'no-such/image:1' is not on this host and the pull"):
        await Sandbox(SandboxConfig(image="no-such/image:1", pull="never"), cluster=cluster).start()
    with pytest.raises(ImageNotFound, match="'no-such/image:1' is not on this host and could not"):
        await Sandbox(SandboxConfig(image="no-such/image:1"), cluster=cluster).start()
    assert cluster.statistics().queue_depth == 0
    assert all(h.used.cpus == 0 and h.starting == 0 for h in cluster.statistics().hosts)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory": "lots"}, "memory 'lots' is not a size"),
        ({"memory": 0}, "memory must be positive"),
        ({"cpus": 0}, r"^invalid sandbox config: cpus 0: Expected `float` >= 0.01$"),
        ({"pids": 0}, r"^invalid sandbox config: pids 0: Expected `int` >= 1$"),
        ({"image": ""}, r"^invalid sandbox config: image '': must be an image reference"),
    ],
)
def test_bad_configs_are_refused_before_anything_starts(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(BadRequest, match=message):
        SandboxConfig(**kwargs).to_spec()


async def test_bad_sandbox_ids(cluster: Cluster) -> None:
    spec = SandboxConfig(image=SH_IMAGE).to_spec()
    with pytest.raises(
        BadRequest, match=r"sandbox_id 'bad id/../x': must be 1 to 100 letters, digits"
    ):
        await cluster.create_sandbox(spec, sandbox_id="bad id/../x")


async def test_unknown_sandbox(cluster: Cluster) -> None:
    with pytest.raises(SandboxNotFound, match="no sandbox 'sb-nope' in this cluster"):
        await cluster.delete_sandbox("sb-nope")
    with pytest.raises(SandboxNotFound, match="no sandbox 'sb-nope' on any host"):
        await cluster.remove_any("sb-nope")


async def test_engine_side_removal_is_a_clear_error(cluster: Cluster) -> None:
    sb = Sandbox(SandboxConfig(image=SH_IMAGE), cluster=cluster)
    await sb.start()
    container = (await sb.status()).info.container_id  # type: ignore[union-attr]
    await anyio.run_process(["docker", "rm", "-f", container])
    with pytest.raises(SandboxNotFound, match=f"sandbox {sb.sandbox_id}"):
        await sb.arun("true")
    await sb.delete()  # deleting what is already gone is fine


async def test_python_image_quickstart_semantics(cluster: Cluster) -> None:
    async with Sandbox(SandboxConfig(image=PY_IMAGE, memory="1g", cpus=1), cluster=cluster) as sb:
        await sb.create_session("bash-1")
        r = await sb.arun("cd /tmp && echo hello", session="bash-1", timeout=30)
        assert (r.output, r.exit_code) == ("hello\n", 0)
        assert (await sb.arun("pwd", session="bash-1")).output == "/tmp\n"
        await sb.write_file("/work/data.bin", b"\x00\x01binary")
        assert await sb.read_file("/work/data.bin") == b"\x00\x01binary"


# ------------------------------------------------------------------ a full host


async def test_a_create_on_a_full_host_ends_in_a_capacity_error_saying_why(
    docker_engine: None,
) -> None:
    async with open_sdk_cluster(queue_timeout=1) as sdk:
        (host,) = sdk.statistics().hosts
        whole = SandboxConfig(image=SH_IMAGE, cpus=1, memory="64m")
        held = [await sdk.create_sandbox(whole) for _ in range(int(host.capacity.cpus))]
        with pytest.raises(CapacityError) as info:
            await sdk.create_sandbox(whole, sandbox_id="sb-no-room")
        cpus = int(host.capacity.cpus)
        assert re.fullmatch(
            rf"sandbox sb-no-room found no room within 1 s: it needs 1 cpu and 64 MiB;"
            rf" host {host.host_id} \({cpus} cpus, [\d.]+ GiB\): this cluster holds {cpus}"
            rf" sandboxes \({cpus} cpus, {64 * cpus} MiB\), free 0 cpus and [\d.]+ GiB\. Only"
            r" this cluster's sandboxes are counted: other owners' and the engine's own limits"
            r" are not\. Nothing fits now on any host\. \(queue_timeout=None waits without a"
            r" limit\.\)",
            str(info.value),
        ), str(info.value)
        assert info.value.details["queue_timeout"] == 1
        # A config's startup_timeout overrides the cluster's; the others still run.
        quick = SandboxConfig(image=SH_IMAGE, cpus=1, memory="64m", startup_timeout=0.2)
        with pytest.raises(CapacityError, match=r"^sandbox \S+ found no room within 0.2 s: "):
            await sdk.create_sandbox(quick)
        assert sdk.statistics().queue_depth == 0
        assert [(await sb.arun("echo held")).output for sb in held] == ["held\n"] * cpus


async def test_a_create_after_drain_host_says_how_to_undrain(docker_engine: None) -> None:
    async with open_sdk_cluster(queue_timeout=0.5) as sdk:
        (host_id,) = sdk.hosts
        sdk.drain_host(host_id)
        with pytest.raises(CapacityError) as info:
            await sdk.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"))
        assert (
            f"found no room within 0.5 s: it needs 1 cpu and 64 MiB; all hosts are draining:"
            f" undrain one with drain_host({host_id!r}, False) (host {host_id} ("
        ) in str(info.value)
        sdk.drain_host(host_id, False)
        sb = await sdk.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"))
        assert (await sb.arun("echo placed")).output == "placed\n"


@pytest.mark.parametrize(
    ("startup_timeout", "message"),
    [
        (-1, "got -1"),
        (math.nan, "got nan"),
        ("5", "got '5'"),
    ],
)
def test_a_bad_startup_timeout_is_refused(startup_timeout: object, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        SandboxConfig(startup_timeout=startup_timeout).to_spec()  # type: ignore[arg-type]
    assert str(info.value) == (
        "startup_timeout must be a positive number of seconds, or None to wait without a"
        f" limit, {message}"
    )


async def test_a_disk_limit_this_engine_cannot_enforce_is_refused_before_placement(
    cluster: Cluster,
) -> None:
    """This machine's engine (overlay2 without xfs project quotas) cannot limit disk: its
    agent does not announce 'disk-limits', so the create never reaches the engine."""
    (host,) = cluster.hosts
    records = len(cluster.records())
    with pytest.raises(BadRequest) as info:
        await Sandbox(SandboxConfig(image=SH_IMAGE, disk="1G"), cluster=cluster).start()
    assert str(info.value) == (
        f"no host can enforce disk='1G': the agent of host {host} does not announce"
        " 'disk-limits' (an engine limits a container's disk only with a storage driver that"
        " has quotas, such as overlay2 on xfs mounted with pquota); create the sandbox without"
        " a disk limit"
    )
    assert len(cluster.records()) == records  # nothing placed, nothing created
    assert cluster.statistics().queue_depth == 0
