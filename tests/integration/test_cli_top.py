"""`rock top` without a terminal: one snapshot as tables (``--once``, or stdout not a tty) and
as JSON, against a real socket agent (``$ROCK_HOSTS``) and over SSH to the loopback sshd; its
error paths exit 125 with one line on stderr."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import anyio
import pytest

import rock_core
from rock_core._owner import local_owner
from rock_sdk import SandboxConfig
from rock_sdk import open_cluster as open_sdk_cluster

from ..conftest import SH_IMAGE
from .test_leases import SocketAgent, running_agent

pytestmark = [pytest.mark.docker]

SSH_DIR = Path(os.environ.get("ROCK_SSH_DIR", "/tmp/rock-sshd"))
# A live local owner's sandboxes are never taken for leaks by a test run on the same engine.
OWNER = f"{local_owner().rsplit(':', 1)[0]}:cli-top"
CONFIG = SandboxConfig(image=SH_IMAGE, memory="64m", cpus=0.25, idle_timeout=900)


def rock_top(*args: str, hosts: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROCK_HOSTS": hosts}
    if home is not None:
        env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "rock_sdk._cli", "top", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[SocketAgent]:
    with running_agent(tmp_path_factory.mktemp("cli-top"), "cli-top") as agent:
        yield agent


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_once_prints_the_tables_and_json_the_same_rows(agent: SocketAgent) -> None:
    async with open_sdk_cluster([agent.address], owner=OWNER) as program:
        sandbox = await program.create_sandbox(CONFIG)
        once = await anyio.to_thread.run_sync(lambda: rock_top("--once", hosts=agent.address))
        as_json = await anyio.to_thread.run_sync(lambda: rock_top("--json", hosts=agent.address))
        piped = await anyio.to_thread.run_sync(lambda: rock_top(hosts=agent.address))
    assert (once.returncode, once.stderr) == (0, "")
    hosts, sandboxes, pools = once.stdout.split("\n\n")
    assert hosts.splitlines()[0].split() == [
        "HOST", "LINK", "CPUS", "MEMORY", "STARTING", "QUEUED", "SANDBOXES", "NOTE"
    ]  # fmt: skip
    host_cells = hosts.splitlines()[1].split()
    assert host_cells[:2] == [agent.host_id, "connected"] and host_cells[2].startswith("0.25/")
    (line,) = [row for row in sandboxes.splitlines() if sandbox.sandbox_id in row]
    cells = line.split()
    assert cells[:4] == [agent.host_id, sandbox.sandbox_id, "running", OWNER]
    assert cells[5] == "idle" and cells[6].endswith("m")  # EXPIRES: "idle 15m"
    assert pools.splitlines()[0].split()[:3] == ["OWNER", "POOL", "IMAGE"]
    # Not a terminal: without --once it prints the snapshot too.
    assert piped.returncode == 0 and piped.stdout.split("\n\n")[0] == hosts

    assert (as_json.returncode, as_json.stderr) == (0, "")
    report = json.loads(as_json.stdout)
    assert sorted(report) == ["hosts", "pools", "sandboxes"]
    (row,) = [r for r in report["sandboxes"] if r["sandbox_id"] == sandbox.sandbox_id]
    assert (row["host"], row["owner"], row["expiry"]) == (agent.host_id, OWNER, "idle")
    assert row["pids"] >= 1 and 800 < row["expires_in"] <= 900
    (host,) = report["hosts"]
    assert (host["host"], host["link"], host["cpus_used"]) == (agent.host_id, "connected", 0.25)


def test_an_unknown_host_exits_125_saying_why() -> None:
    done = rock_top("--once", hosts="ssh://root@no-such-host.invalid")
    assert done.returncode == 125 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("rock top: ") and "no-such-host.invalid" in line


def test_a_bad_interval_exits_125_saying_why() -> None:
    done = rock_top("--once", "--interval", "soon", hosts="local")
    assert (done.returncode, done.stdout) == (125, "")
    assert done.stderr == (
        "rock top: --interval 'soon' is not a duration such as '30', '30s', '5m' or '2h'\n"
    )


@pytest.mark.slow
def test_a_snapshot_over_ssh(tmp_path: Path, docker_engine: None) -> None:
    ssh = tmp_path / ".ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "known_hosts").write_text((SSH_DIR / "known_hosts").read_text())
    (ssh / "config").write_text(
        f"Host 127.0.0.1\n  Port 2222\n  User root\n  IdentityFile {SSH_DIR / 'id'}\n"
    )
    socket = tmp_path / "agent.sock"
    src = Path(rock_core.__file__).parents[1]
    agent = shlex.join(["env", f"PYTHONPATH={src}", sys.executable, "-m", "rock_agent"])
    hosts = f"ssh://127.0.0.1?socket={socket}&agent={quote(agent, safe='')}"
    try:
        done = rock_top("--json", hosts=hosts, home=tmp_path)
    finally:
        subprocess.run(["pkill", "-TERM", "-f", f"serve --socket {socket}"], check=False)
    assert done.returncode == 0, done.stderr
    (host,) = json.loads(done.stdout)["hosts"]
    assert (host["link"], host["error"]) == ("connected", "")
    assert host["cpus"] > 0 and host["memory"] > 0
