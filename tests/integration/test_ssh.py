"""Clusters over SSH against the real OpenSSH server on loopback (127.0.0.1:2222).

The agent is started on demand (`rock-agent ensure` over an exec channel) on a socket private
to this module, then reached by stream-local forwarding. Every failure to connect has its own
error class, asserted here with its message.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_core import (
    AgentNotInstalled,
    AuthenticationFailed,
    HostKeyMismatch,
    HostUnreachable,
    ProtocolError,
    SshOptions,
)
from rock_sdk import SandboxConfig, open_cluster

from ..conftest import SH_IMAGE

SSH_DIR = Path(os.environ.get("ROCK_SSH_DIR", "/tmp/rock-sshd"))
KEY = str(SSH_DIR / "id")
KNOWN_HOSTS = str(SSH_DIR / "known_hosts")
OPTIONS = SshOptions(known_hosts=KNOWN_HOSTS, client_keys=[KEY])

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def agent_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A socket path for this module's on-demand agent; the agent is stopped afterwards."""
    path = str(tmp_path_factory.mktemp("ssh-agent") / "agent.sock")
    yield path
    subprocess.run(["pkill", "-TERM", "-f", f"serve --socket {path}"], check=False)


def address(socket: str, **query: str) -> str:
    options = "&".join(f"{k}={v}" for k, v in {"socket": socket, **query}.items())
    return f"ssh://root@127.0.0.1:2222?{options}"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_sandbox_over_ssh(docker_engine: None, agent_socket: str) -> None:
    async with open_cluster([address(agent_socket)], ssh=OPTIONS) as cluster:
        (host,) = cluster.hosts.values()
        assert host.state == "connected"
        sb = await cluster.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"))
        result = await sb.arun("echo over-ssh; cd /tmp")
        assert result.output == "over-ssh\n"
        assert (await sb.arun("pwd")).output == "/tmp\n"
        await sb.write_file("/tmp/x.bin", bytes(range(256)) * 1000)
        assert await sb.read_file("/tmp/x.bin") == bytes(range(256)) * 1000
        stats = cluster.statistics()
        assert stats.hosts[0].used.sandboxes == 1
    # Leaving the cluster deleted the sandbox (the leak check of `docker_engine` agrees).


async def test_ssh_config_alias_and_proxy_jump(
    docker_engine: None, agent_socket: str, tmp_path: Path
) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        textwrap.dedent(
            f"""\
            Host bastion
                HostName 127.0.0.1
                Port 2222
                User root
                IdentityFile {KEY}
                UserKnownHostsFile {KNOWN_HOSTS}
            Host rock-target
                HostName 127.0.0.1
                Port 2222
                User root
                IdentityFile {KEY}
                UserKnownHostsFile {KNOWN_HOSTS}
                ProxyJump bastion
            """
        )
    )
    options = SshOptions(config=[str(config)])
    async with open_cluster([f"ssh://rock-target?socket={agent_socket}"], ssh=options) as c:
        sb = await c.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"))
        assert (await sb.arun("echo jumped")).output == "jumped\n"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_unknown_host_key_is_refused(tmp_path: Path, agent_socket: str) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    options = SshOptions(known_hosts=str(empty), client_keys=[KEY])
    with pytest.raises(HostKeyMismatch, match="host key is not trusted"):
        async with open_cluster([address(agent_socket)], ssh=options):
            pass


@pytest.fixture
def stranger_key(tmp_path: Path) -> Path:
    """A fresh key pair that no server knows."""
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_changed_host_key_is_refused(
    tmp_path: Path, agent_socket: str, stranger_key: Path
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:2222 {stranger_key.with_suffix('.pub').read_text()}")
    options = SshOptions(known_hosts=str(known), client_keys=[KEY])
    with pytest.raises(HostKeyMismatch, match=r"127\.0\.0\.1:2222.*not trusted"):
        async with open_cluster([address(agent_socket)], ssh=options):
            pass


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_turning_host_key_checks_off_is_explicit(
    docker_engine: None, tmp_path: Path, agent_socket: str
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    options = SshOptions(known_hosts=str(empty), client_keys=[KEY], verify_host_key=False)
    async with open_cluster([address(agent_socket)], ssh=options) as cluster:
        assert len(cluster.hosts) == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_wrong_key_is_an_authentication_error(agent_socket: str, stranger_key: Path) -> None:
    options = SshOptions(known_hosts=KNOWN_HOSTS, client_keys=[str(stranger_key)])
    with pytest.raises(AuthenticationFailed, match="authentication refused"):
        async with open_cluster([address(agent_socket)], ssh=options):
            pass


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_closed_port_is_unreachable(agent_socket: str) -> None:
    with pytest.raises(HostUnreachable, match="cannot connect"):
        async with open_cluster(["ssh://root@127.0.0.1:1"], ssh=OPTIONS):
            pass


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_missing_agent_gives_an_install_hint(tmp_path: Path) -> None:
    where = address(str(tmp_path / "agent.sock"), agent="/nonexistent/rock-agent")
    with pytest.raises(AgentNotInstalled, match=r"no `/nonexistent/rock-agent`.*install it"):
        async with open_cluster([where], ssh=OPTIONS):
            pass


FOREIGN_AGENT = """
import json, socket, sys, os, struct, msgspec
path = sys.argv[-1]
if os.fork():
    import time
    while not os.path.exists(path):
        time.sleep(0.01)
    print(json.dumps({"socket": path}))
    sys.exit(0)
os.setsid()
devnull = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(devnull, fd)
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(1)
conn, _ = server.accept()
welcome = {"op": "welcome", "protocol": 99, "agent_version": "9", "host_id": "x",
           "cpus": 1.0, "memory": 1}
body = msgspec.msgpack.encode(welcome)
conn.recv(65536)
conn.sendall(struct.pack(">I", len(body)) + body)
conn.recv(65536)
"""


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_protocol_mismatch_is_a_protocol_error(tmp_path: Path) -> None:
    script = tmp_path / "foreign_agent.py"
    script.write_text(FOREIGN_AGENT)
    socket = str(tmp_path / "foreign.sock")
    where = address(socket, agent=f"{sys.executable}%20{script}")
    with pytest.raises(ProtocolError, match="speaks protocol 99"):
        async with open_cluster([where], ssh=OPTIONS):
            pass


def test_the_ssh_cluster_example_runs_as_written(docker_engine: None) -> None:
    from ..envs.test_examples import _run

    # The example uses the default agent socket; stop the agent it starts there (a leftover
    # on that path would answer for every namespace host of tests/cluster).
    default = "serve --socket /run/rock-agent/agent.sock"
    running = subprocess.run(["pgrep", "-f", default], capture_output=True).returncode == 0
    try:
        output = _run("ssh_cluster.py")
    finally:
        if not running:
            subprocess.run(["pkill", "-TERM", "-f", default], check=False)
    assert "hosts: {" in output and "'connected'}" in output
    assert "acquired sb-" in output and "hello from sb-" in output
    assert re.search(r": [1-9]\d* sandboxes, ", output), output
