"""A port of the caller reached from inside real sandboxes with no network
(`Sandbox.expose_host_port`), on a local cluster and over SSH (127.0.0.1:2222).

The caller runs a real HTTP server (`http.server` on a thread); programs inside the sandbox
(python's urllib, busybox wget) call it at the URL the block gives.
"""

from __future__ import annotations

import hashlib
import http.server
import shlex
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import anyio
import pytest

import rock_core
from rock_core import BadRequest, Cluster, NotFound, RockError, SandboxFailed
from rock_sdk import Sandbox, SandboxConfig
from rock_sdk import open_cluster as open_sdk_cluster

from ..conftest import PY_IMAGE, SH_IMAGE
from .test_ssh import OPTIONS
from .test_ssh import agent_socket as agent_socket  # the fixture: this module's SSH agent

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET: "hello from the caller <path>"; POST: the sha256 of the body."""

    def do_GET(self) -> None:
        self._answer(f"hello from the caller {self.path}".encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def model_server() -> Iterator[int]:
    """The caller's HTTP server (a stand-in for a trainer's model server); its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
async def py_box(cluster: Cluster) -> AsyncIterator[Sandbox]:
    sb = Sandbox(SandboxConfig(image=PY_IMAGE, memory="256m", cpus=1), cluster=cluster)
    await sb.start()
    try:
        yield sb
    finally:
        await sb.delete()


def fetch(url: str, *, body: int = 0, count: int = 1) -> list[str]:
    """A python3 command fetching `url` (`count` times at once; POSTing `body` bytes)."""
    script = f"""
import concurrent.futures, urllib.request
def one(n):
    data = b"x" * {body} if {body} else None
    with urllib.request.urlopen("{url}/" + str(n), data=data, timeout=30) as answer:
        return answer.read().decode()
with concurrent.futures.ThreadPoolExecutor({count}) as pool:
    for text in pool.map(one, range({count})):
        print(text)
"""
    return ["python3", "-c", script]


async def test_python_inside_calls_the_callers_http_server(
    py_box: Sandbox, model_server: int
) -> None:
    assert (await py_box.execute(["ls", "/sys/class/net"])).stdout == "lo\n"  # no network
    async with py_box.expose_host_port(model_server) as url:
        assert url == f"http://127.0.0.1:{url.port}"
        result = await py_box.execute(fetch(url))
        assert (result.exit_code, result.stdout) == (0, "hello from the caller /0\n")
        many = await py_box.execute(fetch(url, count=24))
        assert many.exit_code == 0, many.stderr
        assert sorted(many.stdout.splitlines()) == sorted(
            f"hello from the caller /{n}" for n in range(24)
        )
        size = 3_000_000  # many credit windows into the sandbox and back
        posted = await py_box.execute(fetch(url, body=size))
        digest = hashlib.sha256(b"x" * size).hexdigest()
        assert (posted.exit_code, posted.stdout) == (0, f"{size} {digest}\n")
        assert url.errors == [] and url.connections == 26
    # Left: nothing listens there any more.
    after = await py_box.execute(fetch(f"http://127.0.0.1:{url.port}"))
    assert after.exit_code == 1 and "Connection refused" in after.stderr


async def test_busybox_wget_inside_on_a_fixed_port(cluster: Cluster, model_server: int) -> None:
    async with Sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"), cluster=cluster) as sb:
        async with sb.expose_host_port(model_server, port=8123) as url:
            assert url == "http://127.0.0.1:8123"
            result = await sb.execute(["wget", "-q", "-O", "-", f"{url}/v1/models"])
            assert (result.exit_code, result.stdout) == (0, "hello from the caller /v1/models")


async def test_a_refused_local_port_resets_the_connection_inside(py_box: Sandbox) -> None:
    with_nothing = Path("/proc/sys/net/ipv4/ip_local_port_range")  # a port nothing listens on
    low = int(with_nothing.read_text().split()[0]) - 1
    seen: list[RockError] = []
    async with py_box.expose_host_port(low, on_error=seen.append) as url:
        result = await py_box.execute(fetch(url))
        assert result.exit_code == 1
        assert "ConnectionResetError" in result.stderr or "RemoteDisconnected" in result.stderr
        with anyio.fail_after(10):
            while not seen:  # noqa: ASYNC110
                await anyio.sleep(0.01)
    (error,) = seen
    assert url.errors == [error] and isinstance(error, NotFound)
    assert str(error) == (
        f"nothing listens on 127.0.0.1:{low} (connection refused), so a connection from "
        f"sandbox {py_box.sandbox_id} was reset"
    )


async def test_a_sandbox_deleted_meanwhile_ends_the_block(
    cluster: Cluster, model_server: int
) -> None:
    sb = Sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"), cluster=cluster)
    await sb.start()
    ready, outcome = anyio.Event(), list[BaseException]()

    async def expose() -> None:
        try:
            async with sb.expose_host_port(model_server):
                ready.set()
                await anyio.sleep_forever()
        except RockError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(expose)
        await ready.wait()
        await sb.delete()
    (error,) = outcome
    assert isinstance(error, SandboxFailed)
    assert str(error).startswith(f"sandbox {sb.sandbox_id} stopped or was removed: port ")


@pytest.mark.parametrize(
    ("local_port", "port", "message"),
    [
        (70000, 0, "local_port must be an integer between 1 and 65535, got 70000"),
        (True, 0, "local_port must be an integer between 1 and 65535, got True"),
        (float("nan"), 0, "local_port must be an integer between 1 and 65535, got nan"),
        (8000, 65536, "port must be an integer between 0 and 65535, got 65536"),
    ],
)
async def test_bad_input_is_a_bad_request(
    py_box: Sandbox, local_port: object, port: object, message: str
) -> None:
    with pytest.raises(BadRequest) as info:
        async with py_box.expose_host_port(local_port, port=port):  # type: ignore[arg-type]
            pass
    assert str(info.value) == message


def _worktree_agent() -> str:
    """The SSH agent command running this checkout's code (as the local agent does)."""
    src = Path(rock_core.__file__).parents[1]
    command = ["env", f"PYTHONPATH={src}", sys.executable, "-m", "rock_agent"]
    return quote(shlex.join(command), safe="")


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_over_ssh_it_rides_the_ssh_connection(
    docker_engine: None, agent_socket: str, model_server: int
) -> None:
    address = f"ssh://root@127.0.0.1:2222?socket={agent_socket}&agent={_worktree_agent()}"
    async with open_sdk_cluster([address], ssh=OPTIONS) as cluster:
        py = await cluster.create_sandbox(SandboxConfig(image=PY_IMAGE, memory="256m"))
        sh = await cluster.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"))
        async with (
            py.expose_host_port(model_server) as url,
            sh.expose_host_port(model_server) as sh_url,
        ):
            result = await py.execute(fetch(url, count=8))
            assert result.exit_code == 0, result.stderr
            assert sorted(result.stdout.splitlines()) == sorted(
                f"hello from the caller /{n}" for n in range(8)
            )
            got = await sh.execute(["wget", "-q", "-O", "-", f"{sh_url}/ssh"])
            assert (got.exit_code, got.stdout) == (0, "hello from the caller /ssh")


ROOT = Path(__file__).parents[2]
SECTION = "## The trainer's model server, from inside a sandbox"


def docs_code() -> str:
    """The python block of this feature's section of docs/integrations.md."""
    text = (ROOT / "docs" / "integrations.md").read_text()
    section = text[text.index(SECTION) :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("\n```", start)]


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.slow
def test_the_docs_example_runs_as_written(docker_engine: None) -> None:
    done = run_python("-c", docs_code())
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == '{"data": [{"id": "policy-v1"}]}\n'


@pytest.mark.slow
def test_the_example_runs_as_written(docker_engine: None) -> None:
    done = run_python(str(ROOT / "examples" / "model_server_in_sandbox.py"))
    assert (done.returncode, done.stderr) == (0, "")
    models = '{"object": "list", "data": [{"id": "policy-v1"}]}'
    assert done.stdout.splitlines() == [
        f"inside: {models}",
        f"inside: {models}",
        "a connection failed: NotFound",
        "inside, the server stopped: exit code 1",
        "3 connections, 1 failed",
    ]
