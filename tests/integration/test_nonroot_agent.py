"""An agent run by an ordinary user (in the docker group, not root) still ends what it must.

The sandboxes' processes run as root, so such an agent may neither signal them nor read their
environment from the host. Timeouts, interrupts and closes must still work, through the
sandbox itself (`rock_agent._signals`), on a bash image and on a busybox image.

Run as root, the tests run the agent as the user `rock-ci` from a Python of its own (root's
Python may live where other users cannot enter), made once by `scripts/nonroot-agent-env.sh`;
run as an ordinary user, as that user. Every wait has a
generous bound: it detects a hang, it is no timing assertion.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from rock_sdk import Sandbox, SandboxCluster, SandboxConfig, open_cluster

from ..conftest import PY_IMAGE, SH_IMAGE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
USER = os.environ.get("ROCK_NONROOT_USER", "rock-ci")
HANG = 120  # seconds: far beyond any of these waits on a busy machine; only a hang reaches it
START_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def nonroot_python() -> str:
    """A python with this checkout's package that the agent's user can run.

    Run as an ordinary user, the tests run the agent as themselves (that is the case under
    test); as root, as the user `USER`, made with its own Python by
    `scripts/nonroot-agent-env.sh`."""
    if os.geteuid() != 0:
        return sys.executable
    setup = subprocess.run(
        ["bash", str(REPO / "scripts" / "nonroot-agent-env.sh")],
        capture_output=True,
        text=True,
    )
    if setup.returncode != 0:
        pytest.fail(
            f"cannot set up a non-root agent (scripts/nonroot-agent-env.sh exited "
            f"{setup.returncode}):\n{setup.stderr[-3000:]}{setup.stdout[-1000:]}"
        )
    return setup.stdout.split()[-1]


class NonRootAgent:
    """`rock-agent serve --socket` as the user `USER`, in a folder of that user's."""

    def __init__(self, python: str) -> None:
        self.as_root = os.geteuid() == 0
        self.user = USER if self.as_root else pwd.getpwuid(os.geteuid()).pw_name
        self.folder = Path(tempfile.mkdtemp(prefix="rock-nonroot-"))
        if self.as_root:
            shutil.chown(self.folder, USER, USER)
        self.socket = self.folder / "agent.sock"
        self.log = self.folder / "agent.log"
        self.host_id = f"nonroot-{secrets.token_hex(3)}"
        self.agent = [python, "-m", "rock_agent"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> NonRootAgent:
        become = ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups"]
        command = [
            *(become if self.as_root else []),
            *self.agent,
            "serve",
            "--socket",
            str(self.socket),
            "--host-id",
            self.host_id,
        ]
        home = Path("~" + self.user).expanduser()
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "USER": self.user, "LANG": "C.UTF-8"}
        if "PYTHONPATH" in os.environ:  # a checkout run from its sources
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the non-root agent did not start:\n{self.tail()}")
            time.sleep(0.05)
        return self

    def uid(self) -> int:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(ln for ln in children.splitlines() if ln.startswith("Uid:")).split()[1])

    def tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        found = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=rock.host={self.host_id}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        if found:
            subprocess.run(["docker", "rm", "-f", *found], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def nonroot_agent(nonroot_python: str, docker_engine: None) -> Iterator[NonRootAgent]:
    agent = NonRootAgent(nonroot_python).start()
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture(scope="module")
async def nonroot_cluster(nonroot_agent: NonRootAgent) -> AsyncIterator[SandboxCluster]:
    async with open_cluster([f"unix://{nonroot_agent.socket}"]) as cluster:
        yield cluster


async def _sandbox(cluster: SandboxCluster, image: str) -> Sandbox:
    sb = Sandbox(SandboxConfig(image=image, memory="256m", cpus=0.5), cluster=cluster)
    return await sb.start()


@pytest.fixture(scope="module", params=[PY_IMAGE, SH_IMAGE], ids=["bash", "sh"])
async def sandbox(
    request: pytest.FixtureRequest, nonroot_cluster: SandboxCluster
) -> AsyncIterator[Sandbox]:
    sb = await _sandbox(nonroot_cluster, request.param)
    try:
        yield sb
    finally:
        await sb.delete()


async def sleeps(sb: Sandbox, session: str, series: str) -> list[str]:
    """The `sleep <series>NN` processes of the sandbox, seen from inside it (sorted)."""
    listed = await sb.arun(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' 2>/dev/null < $p/cmdline; echo; done "
        f"| grep -o '^sleep {series}[0-9][0-9]' | sort || true",
        session=session,
        timeout=60,
    )
    return listed.output.split("\n")[:-1]


def test_the_agent_is_not_root(nonroot_agent: NonRootAgent) -> None:
    # Everything below is about an agent that may not signal root's processes.
    assert nonroot_agent.uid() != 0


async def test_a_timed_out_command_ends_and_the_session_goes_on(sandbox: Sandbox) -> None:
    s = await sandbox.create_session(f"t{secrets.token_hex(3)}")
    with anyio.fail_after(HANG):
        result = await sandbox.arun("sleep 1100", session=s, timeout=2)
    assert result.timed_out
    assert (await sandbox.arun("echo alive", session=s, timeout=60)).output == "alive\n"
    assert await sleeps(sandbox, s, "11") == []


async def test_a_timeout_kills_daemonized_processes(sandbox: Sandbox) -> None:
    s, other = [await sandbox.create_session(f"d{secrets.token_hex(3)}") for _ in range(2)]
    await sandbox.arun("(sleep 1299 &)", session=other)  # another session's daemon
    with anyio.fail_after(HANG):
        result = await sandbox.arun(
            "(sleep 1201 &); sh -c 'sleep 1202 &'; sleep 1203", session=s, timeout=2
        )
    assert result.timed_out
    assert await sleeps(sandbox, other, "12") == ["sleep 1299"]
    await sandbox.close_session(other)
    assert await sleeps(sandbox, s, "12") == []


async def test_interrupt_then_wait_returns_and_keeps_the_session(sandbox: Sandbox) -> None:
    s = await sandbox.create_session(f"i{secrets.token_hex(3)}")
    for command in ("cat", "while :; do sleep 0.1; done", "sleep 1304"):
        proc = await sandbox.start_interactive(command, session=s)
        await anyio.sleep(0.3)
        await proc.interrupt()
        with anyio.fail_after(HANG):
            result = await proc.wait(timeout=30)
        assert not result.session_closed, command
        assert result.exit_code != 0, command
        assert (await sandbox.arun("echo alive", session=s, timeout=60)).output == "alive\n"


async def test_a_timed_out_wait_ends_the_interactive_program(sandbox: Sandbox) -> None:
    s = await sandbox.create_session(f"w{secrets.token_hex(3)}")
    proc = await sandbox.start_interactive("sleep 1405", session=s)
    with anyio.fail_after(HANG):
        result = await proc.wait(timeout=1)
    assert result.timed_out
    assert (await sandbox.arun("echo alive", session=s, timeout=60)).output == "alive\n"
    assert await sleeps(sandbox, s, "14") == []


async def test_closing_a_session_ends_its_processes(sandbox: Sandbox) -> None:
    s, watcher = [await sandbox.create_session(f"c{secrets.token_hex(3)}") for _ in range(2)]
    await sandbox.arun("(sleep 1506 &); sleep 1507 &", session=s)
    await sandbox.start_interactive("sleep 1508", session=s)
    await anyio.sleep(0.3)
    assert await sleeps(sandbox, watcher, "15") == ["sleep 1506", "sleep 1507", "sleep 1508"]
    with anyio.fail_after(HANG):
        await sandbox.close_session(s)
    assert await sleeps(sandbox, watcher, "15") == []


async def test_a_timed_out_execute_ends_its_processes(sandbox: Sandbox) -> None:
    s = await sandbox.create_session(f"x{secrets.token_hex(3)}")
    with anyio.fail_after(HANG):
        result = await sandbox.execute(["sh", "-c", "sleep 1609 & sleep 1610"], timeout=2)
    assert result.timed_out
    assert await sleeps(sandbox, s, "16") == []


async def test_a_timeout_spares_another_sandboxs_processes(
    sandbox: Sandbox, nonroot_cluster: SandboxCluster
) -> None:
    other = await _sandbox(nonroot_cluster, sandbox.config.image)
    try:
        # The same steps in both: their processes likely have the same pids in each sandbox.
        a, b = [await sb.create_session("twin") for sb in (sandbox, other)]
        await other.arun("(sleep 1798 &); sleep 1797 &", session=b)
        with anyio.fail_after(HANG):
            result = await sandbox.arun("(sleep 1711 &); sleep 1712", session=a, timeout=2)
        assert result.timed_out
        assert await sleeps(other, b, "17") == ["sleep 1797", "sleep 1798"]
        await sandbox.close_session(a)
        assert await sleeps(other, b, "17") == ["sleep 1797", "sleep 1798"]
        assert await sleeps(sandbox, await sandbox.create_session(), "17") == []
    finally:
        await other.delete()
