"""The namespace hosts behave like separate machines reached over SSH, and leave nothing behind.

Proves the harness of the multi-host tests: real OpenSSH per namespace (by alias and address,
OpenSSH client and asyncssh), per-host session environment, stream-local forwarding inside a
namespace, link and sshd faults, process scoping, and teardown and sweeping of every resource.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import asyncssh
import pytest
from asyncssh.misc import _ACMWrapper

from rock_agent import _procs

from ._netns import (
    HOST_ID_ENV,
    SOCKET_ENV,
    SUBNET_ENV,
    NetnsCluster,
    NetnsError,
    NetnsHost,
    open_netns_hosts,
    sweep_stale,
)

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]

# Serves a unix socket: sends the network namespace it runs in, then echoes.
ECHO_SERVER = textwrap.dedent(
    """
    import os, socket, sys
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(sys.argv[1])
    srv.listen()
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        with conn:
            conn.sendall(os.readlink("/proc/self/ns/net").encode() + b"\\n")
            while data := conn.recv(65536):
                conn.sendall(data)
    """
)


def namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split(" ")[0] for line in out.splitlines()]


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0


def route_exists(subnet: str) -> bool:
    out = subprocess.run(["ip", "route", "show", "type", "unreachable"], capture_output=True)
    return subnet in [line.split()[1] for line in out.stdout.decode().splitlines()]


def net_inode(host: NetnsHost) -> str:
    return f"net:[{os.stat(f'/run/netns/{host.name}').st_ino}]"


def connect(
    cluster: NetnsCluster, host: NetnsHost, **kw: float
) -> _ACMWrapper[asyncssh.SSHClientConnection]:
    return asyncssh.connect(
        host.address,
        port=host.port,
        username="root",
        known_hosts=str(cluster.known_hosts),
        client_keys=[str(cluster.client_key)],
        **kw,
    )


@pytest.fixture
def echo_server(netns_hosts: NetnsCluster) -> Iterator[None]:
    """A unix-socket echo server inside every host, at ``<host dir>/echo.sock``."""
    procs = []
    try:
        for host in netns_hosts:
            proc = host.spawn(
                [sys.executable, "-c", ECHO_SERVER, str(host.workdir / "echo.sock")],
                stdout=subprocess.PIPE,
            )
            procs.append(proc)
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        for host in netns_hosts:
            (host.workdir / "echo.sock").unlink(missing_ok=True)


# ------------------------------------------------------------------ reaching the hosts


@pytest.mark.parametrize("by", ["alias", "address"])
def test_openssh_client_reaches_each_host_with_its_own_identity(
    netns_hosts: NetnsCluster, by: str
) -> None:
    for host in netns_hosts:
        target = host.alias if by == "alias" else host.address
        result = subprocess.run(
            ["ssh", "-F", str(netns_hosts.ssh_config), target,
             f"echo ${HOST_ID_ENV} ${SOCKET_ENV} $SSH_CONNECTION"],
            capture_output=True,
            text=True,
            timeout=30,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        host_id, socket_path, _, _, server_address, port = result.stdout.split()
        assert (host_id, socket_path) == (host.host_id, str(host.agent_socket))
        assert (server_address, port) == (host.address, "22")
    ids = {host.host_id for host in netns_hosts}
    assert len(ids) == 3 and all(host_id.endswith(("-h1", "-h2", "-h3")) for host_id in ids)


async def test_asyncssh_sessions_see_the_host_env(netns_hosts: NetnsCluster) -> None:
    for host in netns_hosts:
        async with connect(netns_hosts, host) as conn:
            result = await conn.run("env", check=True)
        assert isinstance(result.stdout, str)
        env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        assert env[HOST_ID_ENV] == host.host_id
        assert env[SOCKET_ENV] == str(host.agent_socket)
        assert env["SSH_CONNECTION"].split()[2] == host.address


async def test_asyncssh_reads_the_generated_config(netns_hosts: NetnsCluster) -> None:
    host = netns_hosts["h2"]
    async with asyncssh.connect("h2", config=[str(netns_hosts.ssh_config)]) as conn:
        result = await conn.run(f"echo ${HOST_ID_ENV}", check=True)
    assert result.stdout == f"{host.host_id}\n"


async def test_stream_local_forwarding_reaches_a_server_inside_the_namespace(
    netns_hosts: NetnsCluster, echo_server: None
) -> None:
    for host in netns_hosts:
        async with connect(netns_hosts, host) as conn:
            reader, writer = await conn.open_unix_connection(str(host.workdir / "echo.sock"))
            assert await reader.readline() == f"{net_inode(host)}\n".encode()
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            writer.close()


async def test_a_wrong_host_key_is_refused(netns_hosts: NetnsCluster, tmp_path: Path) -> None:
    h1, h2 = netns_hosts["h1"], netns_hosts["h2"]
    # h2's key filed under h1's address: what a man in the middle would present.
    line = netns_hosts.known_hosts.read_text().splitlines()[1].split(" ", 1)[1]
    (tmp_path / "known_hosts").write_text(f"{h1.address} {line}\n")
    with pytest.raises(asyncssh.HostKeyNotVerifiable, match="Host key is not trusted"):
        await asyncssh.connect(
            h1.address,
            username="root",
            known_hosts=str(tmp_path / "known_hosts"),
            client_keys=[str(netns_hosts.client_key)],
        )
    assert h2.address in netns_hosts.known_hosts.read_text()


# ------------------------------------------------------------------ faults


async def test_link_down_cuts_the_host_off_and_link_up_restores_it(
    netns_hosts: NetnsCluster, echo_server: None
) -> None:
    host = netns_hosts["h3"]
    async with connect(netns_hosts, host) as conn:
        reader, writer = await conn.open_unix_connection(str(host.workdir / "echo.sock"))
        await reader.readline()
        host.link_down()
        try:
            assert not host.link_is_up()
            with pytest.raises(OSError) as caught:
                await connect(netns_hosts, host, connect_timeout=5)
            assert caught.value.errno == errno.EHOSTUNREACH, caught.value
            # The open connection is stalled, not broken: its packets are lost meanwhile.
            writer.write(b"held")
            with anyio.move_on_after(0.5) as scope:
                await reader.readexactly(4)
            assert scope.cancelled_caught
        finally:
            host.link_up()
        assert host.link_is_up()
        with anyio.fail_after(10):  # TCP retransmits once the route is back
            assert await reader.readexactly(4) == b"held"
        writer.close()
    async with connect(netns_hosts, host, connect_timeout=5) as conn:
        assert (await conn.run("echo back", check=True)).stdout == "back\n"
    for other in (netns_hosts["h1"], netns_hosts["h2"]):
        assert other.link_is_up()


async def test_kill_sshd_refuses_new_connections_until_start_sshd(
    netns_hosts: NetnsCluster,
) -> None:
    host = netns_hosts["h2"]
    first = host.sshd_pid()
    assert first is not None
    async with connect(netns_hosts, host) as survivor:
        host.kill_sshd(sessions=False)
        try:
            assert host.sshd_pid() is None and not _procs.alive(first)
            with pytest.raises(ConnectionRefusedError):
                await connect(netns_hosts, host)
            # Only the listener went: the open connection still runs commands.
            assert (await survivor.run("echo alive", check=True)).stdout == "alive\n"
        finally:
            pid = host.start_sshd()
    assert pid != first and host.pids_of(r"^(\S*/)?sshd\b") == [pid]
    async with connect(netns_hosts, host) as conn:
        host.kill_sshd()  # sessions too
        with anyio.fail_after(5):
            await conn.wait_closed()
        with pytest.raises(asyncssh.ChannelOpenError, match="SSH connection closed"):
            await conn.run("true")
    assert host.pids_of("sshd") == []
    host.start_sshd()
    with pytest.raises(NetnsError, match=r"sshd of h2 is already running \(pid \d+\)"):
        host.start_sshd()


def test_process_helpers_see_only_their_namespace(netns_hosts: NetnsCluster) -> None:
    h1, h2 = netns_hosts["h1"], netns_hosts["h2"]
    marker = ["sleep", "301.25"]
    outside = subprocess.Popen(marker)
    try:
        inside = h1.spawn(marker)
        assert h1.pids_of(r"^sleep 301\.25$") == [inside.pid]
        assert h2.pids_of(r"^sleep 301\.25$") == []
        assert h2.kill_processes(r"^sleep 301\.25$") == 0
        assert h1.kill_processes(r"^sleep 301\.25$") == 1
        assert inside.wait(timeout=5) == -signal.SIGKILL
        assert outside.poll() is None
    finally:
        outside.kill()
        outside.wait()
    assert h1.run(["cat", "/proc/self/net/dev"]).stdout.count(":") == 2  # lo and eth0
    assert h1.run(f"echo ${HOST_ID_ENV}").stdout == f"{h1.host_id}\n"
    with pytest.raises(NetnsError, match=r"'echo oops >&2; exit 3' on h1 failed \(exit 3\): oops"):
        h1.run("echo oops >&2; exit 3")


# ------------------------------------------------------------------ teardown and sweeping


@pytest.mark.parametrize("body", ["returns", "raises"])
def test_teardown_leaves_nothing(body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = pytest.raises(RuntimeError, match="boom")
    if body == "raises":  # and on a subnet of the caller's choice
        monkeypatch.setenv(SUBNET_ENV, "10.231.254.0/28")
    with expected if body == "raises" else contextlib.nullcontext():
        with open_netns_hosts(2, shared_host_key=True) as cluster:
            made = [(h.name, h.veth, h.sshd_pid()) for h in cluster]
            stray = cluster["h2"].spawn(["sleep", "300"])
            subnet, workdir = str(cluster.subnet), cluster.workdir
            assert len(set(cluster.known_hosts.read_text().split()[2::3])) == 1
            assert route_exists(subnet)
            if body == "raises":
                assert subnet == "10.231.254.0/28"
                assert [h.address for h in cluster] == ["10.231.254.11", "10.231.254.12"]
                h2 = cluster["h2"].run(["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
                assert "inet 10.231.254.12 peer 10.231.254.1/32" in h2
                raise RuntimeError("boom")
    assert stray.returncode == -signal.SIGKILL
    for name, veth, sshd in made:
        assert name not in namespaces()
        assert not link_exists(veth)
        assert sshd is not None and not _procs.alive(sshd)
    assert not route_exists(subnet)
    assert not workdir.exists()


def test_bad_requests_are_refused(netns_hosts: NetnsCluster) -> None:
    with pytest.raises(ValueError, match="n must be between 1 and 200 hosts, got 0"):
        with open_netns_hosts(0):
            pass
    taken = str(netns_hosts.subnet)
    with pytest.raises(
        NetnsError, match=rf"subnet {re.escape(taken)} overlaps .*{re.escape(taken)}"
    ):
        with open_netns_hosts(1, subnet=taken):
            pass
    with pytest.raises(NetnsError, match=r"subnet '10\.231\.0\.1/24' is not an IPv4 network"):
        with open_netns_hosts(1, subnet="10.231.0.1/24"):
            pass
    with pytest.raises(NetnsError, match=r"subnet 10\.231\.250\.0/29 is too small for 3 hosts"):
        with open_netns_hosts(3, subnet="10.231.250.0/29"):
            pass
    with pytest.raises(KeyError, match="no host 'h9'"):
        netns_hosts["h9"]
    mine = Path(tempfile.gettempdir()).glob(f"rock-netns-{os.getpid()}-*")
    assert list(mine) == [netns_hosts.workdir]


DYING_RUN = textwrap.dedent(
    """
    import json, sys
    from tests.cluster._netns import open_netns_hosts
    with open_netns_hosts(2) as cluster:
        cluster["h1"].spawn(["sleep", "300"])
        print(json.dumps({"workdir": str(cluster.workdir), "subnet": str(cluster.subnet),
                          "hosts": [[h.name, h.veth, h.sshd_pid()] for h in cluster]}), flush=True)
        sys.stdin.read()
    """
)


def test_sweep_removes_what_a_killed_run_left(netns_hosts: NetnsCluster) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", DYING_RUN],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            left = json.loads(proc.stdout.readline())
            names = [name for name, _, _ in left["hosts"]]
            assert not set(names) & set(sweep_stale())  # its owner is alive: not stale
        finally:
            proc.kill()
    assert set(names) <= set(namespaces())
    assert route_exists(left["subnet"])

    assert set(names) <= set(sweep_stale())

    assert not set(names) & set(namespaces())
    for _, veth, sshd in left["hosts"]:
        assert not link_exists(veth) and not _procs.alive(sshd)
    assert not route_exists(left["subnet"])
    assert not Path(left["workdir"]).exists()
    assert all(host.name in namespaces() for host in netns_hosts)  # a live run is untouched


def test_sweep_removes_a_namespace_of_a_dead_process_without_work_directory() -> None:
    with subprocess.Popen(["true"]) as gone:
        pass
    name = f"rock-{gone.pid}-orphan00-h1"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        with subprocess.Popen(["ip", "netns", "exec", name, "sleep", "300"]) as inside:
            assert name in namespaces()
            assert name in sweep_stale()
            assert inside.wait(timeout=5) == -signal.SIGKILL
        assert name not in namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
