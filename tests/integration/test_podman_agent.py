"""The agent on rootless Podman, run by an ordinary user (not in the docker group), reached by
the SDK as any socket agent is: sessions, files, labels, limits as the host allows, reaping of
a vanished owner's sandboxes and adoption across an agent restart work as on Docker.

The agent runs as the Podman user of `scripts/extras/podman.sh` with ``--runtime podman``, on
that user's Podman service (test_podman_runtime.py checks that an agent starts one). Skipped
(failed under ROCK_REQUIRE_EXTRAS=1) where Podman is not set up, as test_podman_runtime.py is.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from rock_agent._podman import PodmanHost
from rock_agent._podman_service import answers
from rock_core import BadRequest, SandboxSpec, SandboxState
from rock_core._hosts import open_host
from rock_core._protocol import CreateSandbox, SandboxReply
from rock_sdk import SandboxConfig
from rock_sdk import open_cluster as open_sdk_cluster

from ..agent.test_podman_runtime import PodmanUser, podman  # noqa: F401 - the fixture
from ..conftest import PY_IMAGE, SH_IMAGE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

LEASE = 2.0
LONG_LEASE = 60.0
FAST: dict[str, Any] = {"heartbeat": 0.3, "heartbeat_timeout": 1.0}
START_TIMEOUT = 60.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class PodmanAgent:
    """`rock-agent serve --socket --runtime podman` as the Podman user."""

    def __init__(self, user: PodmanUser, lease: float) -> None:
        self.user = user
        self.lease = lease
        self.folder = Path(tempfile.mkdtemp(prefix="rock-podman-agent-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, user.user.pw_name, user.user.pw_name)
        self.socket = self.folder / "agent.sock"
        self.address = f"unix://{self.socket}"
        self.host_id = f"podman-{secrets.token_hex(3)}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PodmanAgent:
        argv = [self.user.python, "-m", "rock_agent", "serve", "--socket", str(self.socket)]
        argv += ["--host-id", self.host_id, "--lease", str(self.lease), "--runtime", "podman"]
        argv += ["--docker", f"unix://{self.user.socket}"]
        with open(self.folder / "agent.log", "ab") as log:
            self.process = subprocess.Popen(
                self.user.command(argv),
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(self.socket):  # bound is not yet listening
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the Podman agent did not start:\n{self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        return (self.folder / "agent.log").read_text(errors="replace")[-4000:]

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(30)
        self.socket.unlink(missing_ok=True)

    def podman(self, *args: str) -> str:
        done = subprocess.run(
            self.user.command(["podman", *args]),
            capture_output=True,
            text=True,
            cwd=self.user.user.pw_dir,
            check=True,
        )
        return done.stdout

    def containers(self) -> list[str]:
        return self.podman("ps", "-aq", "--filter", f"label=rock.host={self.host_id}").split()

    def remove_all(self) -> None:
        found = self.containers()
        if found:
            self.podman("rm", "-f", *found)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def agent(
    request: pytest.FixtureRequest,
    podman: PodmanUser,  # noqa: F811 - the imported fixture
) -> Iterator[PodmanAgent]:
    # A short lease, but for a restart: a new agent keeps an absent owner's sandboxes for its
    # own lease, and the owner's reconnect may take seconds on a busy machine.
    lease = LONG_LEASE if "restarted" in request.node.name else LEASE
    agent = PodmanAgent(podman, lease).start()
    try:
        yield agent
    finally:
        agent.stop()
        leftovers = agent.containers()
        agent.remove_all()
        assert not leftovers, f"containers left behind: {leftovers}"


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await anyio.sleep(0.1)


async def test_sessions_files_and_labels(agent: PodmanAgent) -> None:
    async with open_sdk_cluster([agent.address], **FAST) as cluster:
        sb = await cluster.create_sandbox(SandboxConfig(image=PY_IMAGE, memory="256m", cpus=0.5))
        try:
            session = await sb.create_session("work")
            await sb.arun("cd /tmp && export KEPT=yes", session=session)
            kept = await sb.arun('echo "$KEPT $PWD"', session=session)
            assert kept.output == "yes /tmp\n"
            await sb.write_file("/tmp/data.bin", b"\x00podman\xff")
            assert await sb.read_file("/tmp/data.bin") == b"\x00podman\xff"
            assert (await sb.arun("python3 -c 'print(6*7)'")).output == "42\n"
            labels = agent.podman(
                "inspect", "--format", "{{json .Config.Labels}}", agent.containers()[0]
            )
            assert f'"rock.sandbox":"{sb.sandbox_id}"' in labels
            assert '"rock.managed":"1"' in labels
            image = f"rock-test/podman-commit:{secrets.token_hex(3)}"
            committed = await sb.commit(image, changes=["ENV COMMITTED=1"])
            assert image in committed.tags
            try:
                again = await cluster.create_sandbox(SandboxConfig(image=image, memory="256m"))
                try:
                    got = await again.arun('test -f /tmp/data.bin && echo "kept $COMMITTED"')
                    assert got.output == "kept 1\n"
                    assert await again.read_file("/tmp/data.bin") == b"\x00podman\xff"
                finally:
                    await again.delete()
            finally:
                agent.podman("rmi", image)
        finally:
            await sb.delete()
    assert agent.containers() == []


async def test_a_vanished_owners_sandboxes_are_reaped(agent: PodmanAgent) -> None:
    async with open_host(agent.address, owner="remote:gone-" + secrets.token_hex(3)) as conn:
        await conn.call(
            CreateSandbox(
                id=conn.next_id(),
                sandbox_id="sb-" + secrets.token_hex(4),
                spec=SandboxSpec(image=SH_IMAGE, memory=64 << 20),
            ),
            SandboxReply,
        )
    assert len(agent.containers()) == 1, "kept during the lease"
    await wait_for(lambda: not agent.containers(), 60, "reaped after the lease")


async def test_a_restarted_agent_adopts_its_sandboxes(agent: PodmanAgent) -> None:
    async with open_sdk_cluster([agent.address], lease=30, **FAST) as cluster:
        sb = await cluster.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"))
        await sb.arun("echo one > /tmp/kept")
        host = cluster.core.hosts[agent.host_id]
        agent.stop(signal.SIGKILL)
        await wait_for(lambda: host.state != "connected", 30, "link loss noticed")
        agent.start()
        await wait_for(lambda: host.state == "connected", 60, "reconnected")
        history = cluster.core.record(sb.sandbox_id).history
        assert sb.state is SandboxState.RUNNING, f"{history}\n{agent.log()}"
        assert (await sb.arun("cat /tmp/kept")).output == "one\n"
    assert agent.containers() == []


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
        return body


async def test_ports_and_pause_as_the_host_allows(agent: PodmanAgent) -> None:
    # A non-root agent reaches into a rootless sandbox's network (`_userns`): no root needed.
    async with open_sdk_cluster([agent.address], **FAST) as cluster:
        sb = await cluster.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"))
        try:
            await sb.arun("mkdir -p /www && echo served > /www/f")
            await sb.arun("busybox httpd -p 127.0.0.1:8000 -h /www")
            async with sb.expose_port(8000) as (host, port):
                body = await anyio.to_thread.run_sync(http_get, f"http://{host}:{port}/f")
            assert body == b"served\n"
            problem = PodmanHost.from_info(json.loads(agent.podman("info", "--format", "json")))
            if problem.pause_problem() is None:
                await sb.pause()
                await sb.resume()
            else:
                with pytest.raises(
                    BadRequest, match=re.escape(f"cannot be paused: {problem.pause_problem()}")
                ):
                    await sb.pause()
        finally:
            await sb.delete()
