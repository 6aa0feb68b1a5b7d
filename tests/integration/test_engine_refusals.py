"""The engine boundary against the real engine and agent: what this engine cannot do (a disk
limit, refused before anything is made, and the rule as data), the runtime's refusals to start
a process, input to a process that is gone, containers with odd labels.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from rock_agent._docker import DockerRuntime
from rock_agent._engine import disk_limit_problem, open_docker
from rock_agent._labels import LABEL_CREATED, LABEL_HOST, LABEL_SANDBOX
from rock_core._errors import BadRequest, FileNotFound, RockError, TransportError
from rock_sdk import Sandbox, SandboxConfig

from ..conftest import SH_IMAGE, labelled_containers
from ._engine_edges import HOST

pytestmark = pytest.mark.anyio


async def docker_json(*args: str) -> Any:
    return json.loads((await anyio.run_process(["docker", *args])).stdout)


def containers_of(sandbox_id: str) -> list[str]:
    return labelled_containers(f"{LABEL_SANDBOX}={sandbox_id}")


@pytest.fixture(scope="module")
async def sh_box(cluster: Any) -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"), cluster=cluster) as sb:
        yield sb


async def test_a_disk_limit_this_engine_cannot_enforce_is_refused_before_anything_is_made(
    cluster: Any,
) -> None:
    info = await docker_json("info", "--format", "{{json .}}")
    driver = info["Driver"]
    backing = dict(info["DriverStatus"]).get("Backing Filesystem")
    if driver != "overlay2" or backing == "xfs":
        pytest.skip(f"this test is for overlay2 on another file system than xfs, not {driver}")
    sandbox_id = f"sb-disk-{secrets.token_hex(4)}"
    config = SandboxConfig(image=SH_IMAGE, memory="64m", disk="1g", sandbox_id=sandbox_id)
    # The core refuses first: the host's agent does not announce "disk-limits".
    with pytest.raises(BadRequest) as caught:
        await Sandbox(config, cluster=cluster).start()
    assert str(caught.value).startswith("no host can enforce disk='1g': the agent of host "), (
        caught.value
    )
    assert containers_of(sandbox_id) == []
    # And so does the agent's runtime, for a client that skips the core's check.
    async with open_docker() as docker:
        runtime = DockerRuntime(docker, HOST)
        assert await runtime.supports_disk_limits() is False
        with pytest.raises(BadRequest) as caught:
            await runtime.create(sandbox_id, config.to_spec(), "me", os.getuid())
    assert str(caught.value) == (
        f"sandbox {sandbox_id} asks for disk='1g': disk limits need the overlay2 storage "
        f"driver on xfs mounted with pquota (this engine: overlay2 on {backing})"
    )
    assert containers_of(sandbox_id) == []


async def test_an_unknown_user_is_a_bad_request_and_leaves_no_container(cluster: Any) -> None:
    sandbox_id = f"sb-user-{secrets.token_hex(4)}"
    config = SandboxConfig(image=SH_IMAGE, memory="64m", user="nouser", sandbox_id=sandbox_id)
    with pytest.raises(BadRequest) as caught:
        await Sandbox(config, cluster=cluster).start()
    assert (
        str(caught.value) == f"sandbox {sandbox_id} did not start: no user 'nouser' in the sandbox"
    )
    assert containers_of(sandbox_id) == []


EXEC_REFUSALS = [
    ({"argv": ["true"], "cwd": "/nope"}, FileNotFound, "its working folder /nope does not exist"),
    (
        {"argv": ["true"], "cwd": "/etc/passwd"},
        BadRequest,
        "its working folder /etc/passwd cannot be used: not a directory",
    ),
    ({"argv": ["/nope/prog"]}, FileNotFound, "/nope/prog not found"),
    ({"argv": ["/etc"]}, BadRequest, "/etc cannot be run: permission denied"),
    (
        # More input than a socket holds: the engine stops reading it, and does not hang up.
        {"argv": ["/etc"], "stdin": b"x" * (1 << 20)},
        BadRequest,
        "/etc cannot be run: permission denied",
    ),
    (
        {"argv": ["no-such-prog"], "stdin": b"x"},
        FileNotFound,
        "program 'no-such-prog' not found on the PATH",
    ),
]


@pytest.mark.parametrize(("call", "error", "why"), EXEC_REFUSALS)
async def test_a_process_the_runtime_cannot_start_is_an_error_naming_why(
    sh_box: Sandbox, call: dict[str, Any], error: type[RockError], why: str
) -> None:
    with pytest.raises(error) as caught:
        await sh_box.execute(**call)
    assert type(caught.value) is error
    program = call["argv"][0]
    assert str(caught.value) == f"cannot run {program!r} in sandbox {sh_box.sandbox_id}: {why}"


async def test_a_program_that_exits_126_is_a_result(sh_box: Sandbox) -> None:
    result = await sh_box.execute(["sh", "-c", "echo OCI runtime exec failed; exit 126"])
    assert (result.exit_code, result.stdout) == (126, "OCI runtime exec failed\n")


async def test_containers_with_odd_labels_are_listed_not_fatal() -> None:
    # Anyone may label a container as a sandbox of a host, with values no agent would write.
    host = f"edge-{secrets.token_hex(3)}"
    labels = {LABEL_HOST: host, LABEL_SANDBOX: "odd", LABEL_CREATED: "yesterday"}
    labels["rock.owner-uid"] = "root"
    flags = [f"--label={k}={v}" for k, v in labels.items()]
    name = f"rock-{host}-odd"
    await anyio.run_process(["docker", "create", "--name", name, *flags, SH_IMAGE, "true"])
    try:
        async with open_docker() as docker:
            runtime = DockerRuntime(docker, host)
            (info,) = await runtime.list_sandboxes()
            assert (info.sandbox_id, info.created_at, info.owner_uid) == ("odd", 0.0, -1)
            assert (await runtime.inspect("odd")).created_at == 0.0
    finally:
        await anyio.run_process(["docker", "rm", "-f", name], check=False)


@pytest.fixture(scope="module")
async def plain_box() -> AsyncIterator[tuple[DockerRuntime, str]]:
    """A runtime of its own host id, and a running container it takes for its sandbox 'x'."""
    host = f"edge-{secrets.token_hex(3)}"
    name = f"rock-{host}-x"
    labels = [f"--label={LABEL_HOST}={host}", f"--label={LABEL_SANDBOX}=x"]
    await anyio.run_process(
        ["docker", "run", "-d", "--name", name, *labels, SH_IMAGE, "sleep", "600"]
    )
    try:
        async with open_docker() as docker:
            yield DockerRuntime(docker, host), "x"
    finally:
        await anyio.run_process(["docker", "rm", "-f", name], check=False)


async def test_input_to_a_process_that_ended_is_a_transport_error(
    plain_box: tuple[DockerRuntime, str],
) -> None:
    runtime, sandbox_id = plain_box
    process = await runtime.exec(sandbox_id, ["true"])
    try:
        with pytest.raises(TransportError) as caught:
            for _ in range(64):  # 64 MiB: more than any buffer on the way
                await process.write(b"x" * (1 << 20))
        assert type(caught.value) is TransportError
        assert str(caught.value).startswith(f"writing to a process in sandbox {sandbox_id}: the ")
        assert await process.wait() == 0
    finally:
        await process.aclose()


async def test_input_a_live_process_does_not_read_is_watched_until_it_ends(
    plain_box: tuple[DockerRuntime, str],
) -> None:
    """A write into a connection the process does not drain waits (the watched path, not the
    hot one), and ends with an error once the process has ended without taking it."""
    runtime, sandbox_id = plain_box
    process = await runtime.exec(sandbox_id, ["sleep", "2"])
    try:
        with pytest.raises(TransportError) as caught:
            for _ in range(64):  # 64 MiB: more than any buffer on the way
                await process.write(b"x" * (1 << 20))
        # The engine closes the stream as the process ends ("Connection lost"), or the watch
        # finds it ended first ("the process ended before it took its input").
        assert type(caught.value) is TransportError
        assert str(caught.value).startswith(f"writing to a process in sandbox {sandbox_id}: ")
        assert await process.wait() == 0
    finally:
        await process.aclose()


async def test_input_to_a_closed_stream_is_a_transport_error(
    plain_box: tuple[DockerRuntime, str],
) -> None:
    runtime, sandbox_id = plain_box
    process = await runtime.exec(sandbox_id, ["cat"])
    await process.aclose()
    with pytest.raises(TransportError) as caught:
        await process.write(b"late")
    assert (
        str(caught.value) == f"writing to a process in sandbox {sandbox_id}: the stream is closed"
    )


# ---------------------------------------------------------------------------- disk limits, as data

ROOT = "/var/lib/docker"


def mountinfo(fs: str, options: str, point: str = "/var/lib/docker") -> str:
    return (
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        f"40 22 8:17 / {point} rw,relatime shared:9 - {fs} /dev/sdb1 {options}\n"
    )


def overlay(backing: str) -> dict[str, object]:
    return {
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", backing], ["Supports d_type", "true"]],
        "DockerRootDir": ROOT,
    }


def test_disk_limits_need_overlay2_on_xfs_with_project_quota() -> None:
    need = "disk limits need the overlay2 storage driver on xfs mounted with pquota"
    assert disk_limit_problem(overlay("extfs"), None) == f"{need} (this engine: overlay2 on extfs)"
    quota = mountinfo("xfs", "rw,attr2,inode64,prjquota")
    assert disk_limit_problem(overlay("xfs"), quota) is None
    plain = mountinfo("xfs", "rw,attr2,inode64,noquota")
    assert disk_limit_problem(overlay("xfs"), plain) == (
        f"{need} (this engine: overlay2 on xfs without pquota)"
    )
    # The data folder's own mount decides, not the longest path that only starts alike.
    elsewhere = mountinfo("xfs", "rw,prjquota", point="/var/lib/docker-old")
    assert disk_limit_problem(overlay("xfs"), elsewhere + plain) == (
        f"{need} (this engine: overlay2 on xfs without pquota)"
    )
    # An engine whose mounts this machine cannot see is taken at its word.
    assert disk_limit_problem(overlay("xfs"), None) is None


def test_disk_limits_of_other_storage_drivers() -> None:
    assert disk_limit_problem({"Driver": "btrfs"}, None) is None
    assert disk_limit_problem({"Driver": "zfs"}, None) is None
    assert disk_limit_problem({"Driver": "fuse-overlayfs"}, None) == (
        "disk limits need a storage driver that enforces them (overlay2 on xfs mounted with "
        "pquota, btrfs, zfs or devicemapper); this engine uses fuse-overlayfs"
    )
    assert disk_limit_problem({}, None) == (
        "disk limits need a storage driver that enforces them (overlay2 on xfs mounted with "
        "pquota, btrfs, zfs or devicemapper); this engine uses unknown"
    )
