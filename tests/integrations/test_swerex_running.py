"""Ways to run the SWE-ReX endpoint: the command, on an SSH cluster, on asyncio only, and the
code of its docs section and its example, each driven by SWE-ReX's own client.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest

from rock_sdk import BadRequest, Sandbox, SandboxConfig, SshOptions, open_cluster
from rock_sdk.integrations.swerex import serve_swerex

from ..conftest import SH_IMAGE
from .conftest import require

remote = require("swerex.runtime.remote", "swerex")
rex = require("swerex.runtime.abstract", "swerex")

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-key"
pytestmark = [pytest.mark.anyio, pytest.mark.docker]


def test_asyncio_only() -> None:
    async def serve_on_trio() -> None:
        async with serve_swerex(Sandbox(SandboxConfig(image=SH_IMAGE)), api_key=KEY):
            pass

    # In a thread of its own: this module's async fixtures keep an asyncio loop in this one.
    with (
        ThreadPoolExecutor(1) as thread,
        pytest.raises(BadRequest, match=r"^serve_swerex runs on asyncio \(its HTTP server"),
    ):
        thread.submit(anyio.run, serve_on_trio, backend="trio").result()


SSH_DIR = Path(os.environ.get("ROCK_SSH_DIR", "/tmp/rock-sshd"))


@pytest.fixture
def agent_socket(tmp_path: Path) -> Iterator[str]:
    """A socket for an on-demand agent of this test alone; the agent is stopped afterwards."""
    path = str(tmp_path / "agent.sock")
    yield path
    for proc in Path("/proc").glob("[0-9]*"):  # the agent serving exactly this socket
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and path.encode() in argv:
            os.kill(int(proc.name), signal.SIGTERM)


async def test_a_sandbox_on_an_ssh_cluster(
    docker_engine: None, agent_socket: str, tmp_path: Path
) -> None:
    address = f"ssh://root@127.0.0.1:2222?socket={agent_socket}"
    ssh = SshOptions(known_hosts=str(SSH_DIR / "known_hosts"), client_keys=[str(SSH_DIR / "id")])
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "f.txt").write_text("over ssh\n")
    async with (
        open_cluster([address], ssh=ssh) as ssh_cluster,
        await ssh_cluster.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m")) as sb,
        serve_swerex(sb, api_key=KEY) as served,
    ):
        assert served.host == "127.0.0.1"  # the endpoint runs here, the sandbox over the link
        client = remote.RemoteRuntime(host=served.url, auth_token=KEY, timeout=10)
        await client.create_session(rex.CreateBashSessionRequest())
        await client.upload(rex.UploadRequest(source_path=str(tmp_path / "up"), target_path="/w"))
        obs = await client.run_in_session(rex.BashAction(command="cd /w && cat f.txt"))
        assert obs.output == "over ssh\n"


COMMAND = [sys.executable, "-m", "rock_sdk.integrations.swerex"]


@pytest.fixture
def command() -> Iterator[subprocess.Popen[str]]:
    argv = [*COMMAND, "--image", SH_IMAGE, "--port", "0", "--api-key", KEY]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=os.environ)
    try:
        yield process
    finally:
        if process.poll() is None:  # the test failed early: still let it delete its sandbox
            process.terminate()
            process.wait(timeout=60)


@pytest.mark.slow
async def test_the_command_serves_until_terminated(
    docker_engine: None, command: subprocess.Popen[str]
) -> None:
    assert command.stdout is not None
    line = command.stdout.readline()
    url = re.fullmatch(r"serving sandbox \S+ at (http://127\.0\.0\.1:\d+)\n", line)
    assert url, line
    client = remote.RemoteRuntime(host=url.group(1), auth_token=KEY, timeout=10)
    await client.create_session(rex.CreateBashSessionRequest())
    assert (await client.run_in_session(rex.BashAction(command="echo served"))).output == "served\n"
    command.send_signal(signal.SIGTERM)
    assert command.wait(timeout=60) == 0
    assert command.stdout.read() == "stopped; the sandbox is deleted\n"


def test_the_command_needs_an_api_key() -> None:
    done = subprocess.run([*COMMAND, "--port", "0"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "the following arguments are required: --api-key" in done.stderr


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.slow
def test_the_docs_code_runs(docker_engine: None) -> None:
    doc = (ROOT / "docs" / "integrations.md").read_text()
    section = doc.split("## SWE-agent and SWE-ReX\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    done = run_python("-c", code)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_the_example_runs(docker_engine: None) -> None:
    done = run_python(str(ROOT / "examples" / "integrations" / "swerex_endpoint.py"))
    assert done.returncode == 0, done.stderr
    assert "'42\\n' 0\n'x = 6 * 7\\n'\n" in done.stdout
    assert "test -e /nowhere failed, as SWE-ReX reports it\n" in done.stdout
