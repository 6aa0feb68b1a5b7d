"""Per-sandbox network policy on real Docker (docs/network.md): the allowed port connects, a
denied one is refused at once, names off the DNS list do not resolve, and the sandbox's root
cannot change the rules; bad policies are `BadRequest` before anything is made."""

from __future__ import annotations

import functools
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator

import anyio
import pytest

from rock_agent._docker import DockerRuntime, container_name, open_docker
from rock_core import BadRequest, NetworkPolicy, SandboxFailed
from rock_core.protocol import SandboxSpec
from rock_sdk import Sandbox, SandboxConfig, open_cluster
from tests.conftest import PY_IMAGE, SH_IMAGE
from tests.integration.test_nonroot_agent import NonRootAgent, nonroot_agent, nonroot_python

__all__ = ["nonroot_agent", "nonroot_python"]  # fixtures: an agent run by a docker-group user

pytestmark = [pytest.mark.anyio, pytest.mark.docker, pytest.mark.slow]
# What root would try; `ip` is busybox's, SO_MARK needs CAP_NET_ADMIN too (python:3.11).
CHANGE_RULES = (
    "ip route del default 2>&1; ip link set eth0 down 2>&1; "
    "python3 -c 'import socket; socket.socket().setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 1)'"
    " 2>&1; true"
)
GATEWAY = "172.17.0.1"  # the default bridge's gateway: the host as the sandbox sees it


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def listeners() -> Iterator[list[int]]:
    """Two ports on the host's bridge address that accept and close every connection."""
    servers = [socket.create_server((GATEWAY, 0)) for _ in range(2)]
    stop = threading.Event()

    def serve(server: socket.socket) -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.sendall(b"hello\n")
            conn.close()

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield [s.getsockname()[1] for s in servers]
    stop.set()
    for thread in threads:
        thread.join()
    for server in servers:
        server.close()


def _connect(port: int) -> str:
    """A connect to the host's `port` from busybox (nc) or python:3.11 (no nc there)."""
    python = f"import socket; print(socket.create_connection(('{GATEWAY}', {port}), 5).recv(9))"
    return f'nc -w 5 {GATEWAY} {port} </dev/null 2>&1 || python3 -c "{python}" 2>&1'


async def _check_policy(sb: Sandbox, allowed: int, denied: int) -> None:
    """Allowed connects, denied is refused, DNS filtered, and root cannot change any of it."""
    code, out = await _sh(sb, _connect(allowed))
    assert code == 0 and "hello" in out, out
    code, out = await _sh(sb, _connect(denied))
    assert code != 0 and "refused" in out.lower(), out
    # DNS: the allowed name resolves through the agent's filter, another does not.
    code, out = await _sh(sb, "getent hosts pypi.org || nslookup pypi.org")
    assert code == 0 and "pypi.org" in out, out
    code, out = await _sh(sb, "getent hosts deb.debian.org || nslookup deb.debian.org")
    assert code != 0, out
    # Root in the sandbox has no CAP_NET_ADMIN: rules, routes and links stay as they are.
    code, out = await _sh(sb, "id -u; grep CapEff /proc/self/status")
    uid, caps = out.split()[0], int(out.split()[-1], 16)
    assert uid == "0" and not caps & (1 << 12), out  # CAP_NET_ADMIN is bit 12
    code, out = await _sh(sb, CHANGE_RULES)
    assert out.lower().count("not permitted") >= 1, out
    code, out = await _sh(sb, _connect(denied))
    assert code != 0 and "refused" in out.lower(), out


async def _sh(sb: Sandbox, script: str) -> tuple[int | None, str]:
    result = await sb.execute(["sh", "-c", script], timeout=30)
    return result.exit_code, result.stdout + result.stderr


@pytest.mark.parametrize("image", [SH_IMAGE, PY_IMAGE])
async def test_allowed_reachable_denied_refused_rules_fixed(
    image: str, listeners: list[int]
) -> None:
    allowed, denied = listeners
    policy = NetworkPolicy(allow=[f"{GATEWAY}:{allowed}"], dns=["pypi.org"])
    async with Sandbox(SandboxConfig(image=image, network=policy)) as sb:
        assert (await sb.status()).network == policy
        await _check_policy(sb, allowed, denied)


async def test_an_agent_in_the_docker_group_enforces_a_policy(
    nonroot_agent: NonRootAgent, listeners: list[int]
) -> None:
    """The agent's user is not root: it loads the rules through a helper container and
    listens for DNS on the gateway as itself; the sandbox is held just as tightly."""
    allowed, denied = listeners
    policy = NetworkPolicy(allow=[f"{GATEWAY}:{allowed}"], dns=["pypi.org"])
    async with open_cluster([f"unix://{nonroot_agent.socket}"]) as cluster:
        config = SandboxConfig(image=SH_IMAGE, memory="64m", network=policy)
        sb = await Sandbox(config, cluster=cluster).start()
        try:
            await _check_policy(sb, allowed, denied)
        finally:
            await sb.delete()


async def test_bad_policies_are_bad_requests() -> None:
    for allow, why in [
        ("10.0.0.1/8", "host bits set"),
        ("1.2.3.4:0", "from 1 to 65535"),
        ("1.2.3.4:70000", "from 1 to 65535"),
        ("", "must be a CIDR"),
        ("a\x00b", "NUL"),
        ("nan:nan", "port 'nan'"),
        ("300.1.1.1", "not a CIDR"),
    ]:
        with pytest.raises(BadRequest, match=why):
            NetworkPolicy(allow=[allow])
    with pytest.raises(BadRequest, match="a DNS entry must be"):
        NetworkPolicy(dns=[""])


async def _in_sandbox(
    host_id: str, sandbox_id: str, script: str
) -> subprocess.CompletedProcess[str]:
    """`script` run by docker exec, off the event loop (where the DNS filters answer)."""
    name = container_name(host_id, sandbox_id)
    argv = ["docker", "exec", name, "sh", "-c", script]
    run = functools.partial(subprocess.run, argv, capture_output=True, text=True, timeout=60)
    return await anyio.to_thread.run_sync(run)


def _table(host_id: str, sandbox_id: str) -> str:
    """The sandbox's policy table, as the host's nft lists it in the sandbox's namespace."""
    name = container_name(host_id, sandbox_id)
    pid = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True, text=True
    ).stdout.strip()
    argv = ["nsenter", f"--net=/proc/{pid}/ns/net", "nft", "list", "table", "inet", "rock_policy"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout


async def test_helper_container_loads_the_rules_for_an_agent_that_is_not_root(
    listeners: list[int],
) -> None:
    """The path of an agent in the docker group: a helper container in the sandbox's
    namespace, with the host's nft bind-mounted, loads the same rules."""
    allowed, denied = listeners
    host_id, sandbox_id = f"netpol-{secrets.token_hex(3)}", "helper"
    policy = NetworkPolicy(allow=[f"{GATEWAY}:{allowed}"])
    async with open_docker(None) as client:
        runtime = DockerRuntime(client, host_id)
        runtime.network.as_root = False
        try:
            await runtime.create(sandbox_id, SandboxSpec(image=SH_IMAGE, network=policy), "me", 0)
            assert f"ip daddr {GATEWAY} tcp dport {allowed} accept" in _table(host_id, sandbox_id)
            done = await _in_sandbox(host_id, sandbox_id, f"nc -w 5 {GATEWAY} {denied} </dev/null")
            assert done.returncode != 0 and "refused" in done.stderr.lower(), done
            done = await _in_sandbox(host_id, sandbox_id, f"nc -w 5 {GATEWAY} {allowed} </dev/null")
            assert done.returncode == 0 and "hello" in done.stdout, done
        finally:
            await runtime.remove(sandbox_id)


async def test_a_new_agent_restores_the_dns_filter_of_a_running_sandbox() -> None:
    """The rules outlive the agent (they live in the namespace), its DNS filter does not: the
    next agent finds the sandbox and applies its policy again, with a filter of its own."""
    host_id, sandbox_id = f"netpol-{secrets.token_hex(3)}", "restored"
    policy = NetworkPolicy(dns=["pypi.org"])
    async with open_docker(None) as client:
        first = DockerRuntime(client, host_id)
        try:
            await first.create(sandbox_id, SandboxSpec(image=SH_IMAGE, network=policy), "me", 0)
            assert (await _in_sandbox(host_id, sandbox_id, "nslookup pypi.org")).returncode == 0
            await first.network.forget(sandbox_id)  # the agent is gone: so is its filter
            lost = await _in_sandbox(host_id, sandbox_id, "nslookup -timeout=2 pypi.org")
            assert lost.returncode != 0, lost
            second = DockerRuntime(client, host_id)
            assert await second.restore_network() == [sandbox_id]
            assert await second.restore_network() == []
            done = await _in_sandbox(host_id, sandbox_id, "nslookup pypi.org")
            assert done.returncode == 0 and "pypi.org" in done.stdout, done
            await second.network.forget(sandbox_id)
        finally:
            await first.remove(sandbox_id)


async def test_a_policy_that_cannot_load_leaves_no_dns_filter_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The create is undone when the rules do not load, and so is the DNS filter opened for
    them: no socket stays open on the gateway for a sandbox that does not exist."""
    host_id, sandbox_id = f"netpol-{secrets.token_hex(3)}", "unloaded"
    policy = NetworkPolicy(dns=["pypi.org"])

    async def refuse(*_: object) -> None:
        raise SandboxFailed("cannot apply the network policy: refused for the test")

    async with open_docker(None) as client:
        runtime = DockerRuntime(client, host_id)
        monkeypatch.setattr(runtime.network, "_load_here", refuse)
        monkeypatch.setattr(runtime.network, "_load_in_helper", refuse)
        try:
            with pytest.raises(SandboxFailed, match="refused for the test"):
                await runtime.create(
                    sandbox_id, SandboxSpec(image=SH_IMAGE, network=policy), "me", 0
                )
            assert runtime.network.filters == {}
            assert await runtime.list_sandboxes() == []
        finally:
            await runtime.remove(sandbox_id)
