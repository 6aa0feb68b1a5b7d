"""The engine boundary at its edges: a wedged or broken engine, none at all, and what the
engine here cannot do (disk limits), the runtime's refusals to start a process, odd labels.

A fake engine (an aiohttp server on a unix socket) stands in for a wedged or misbehaving one,
driven through the agent's own `open_docker` and `DockerRuntime`; everything else runs
against the real engine, the real agent and the real `rock` command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from rock_agent._docker import DockerRuntime
from rock_agent._engine import (
    Bounds,
    disk_limit_problem,
    engine_errors,
    engine_unavailable,
    open_docker,
)
from rock_agent._labels import LABEL_CREATED, LABEL_HOST, LABEL_OWNER, LABEL_SANDBOX
from rock_core import open_cluster
from rock_core._errors import (
    BadRequest,
    EngineUnavailable,
    FileNotFound,
    ProtocolError,
    RockError,
    SandboxFailed,
    TimedOut,
    TransportError,
)
from rock_core._protocol import SandboxSpec
from rock_sdk import Sandbox, SandboxConfig

from ..conftest import SH_IMAGE

pytestmark = pytest.mark.anyio

BOUND = 0.3  # every bound of the runtime under test, in seconds
SHORT = Bounds(
    control=BOUND,
    create=BOUND,
    stop_margin=BOUND,
    remove=BOUND,
    commit=BOUND,
    disk_usage=BOUND,
    stats=BOUND,
    pull_idle=BOUND,
)
HOST = "edge"
NAME = f"rock-{HOST}-sb-1"

# (method, path after the API version, route name): what the fake engine knows.
ROUTES = [
    ("GET", r"/version", "version"),
    ("GET", r"/info", "info"),
    ("GET", r"/images/json", "images"),
    ("POST", r"/images/create", "pull"),
    ("GET", r"/images/(?P<name>.+)/json", "image"),
    ("DELETE", r"/images/(?P<name>.+)", "image-remove"),
    ("GET", r"/containers/json", "containers"),
    ("POST", r"/containers/create", "create"),
    ("GET", r"/containers/(?P<name>[^/]+)/json", "inspect"),
    ("POST", r"/containers/[^/]+/start", "start"),
    ("POST", r"/containers/[^/]+/stop", "stop"),
    ("POST", r"/containers/[^/]+/exec", "exec"),
    ("GET", r"/containers/[^/]+/stats", "stats"),
    ("DELETE", r"/containers/[^/]+", "remove"),
    ("POST", r"/exec/[^/]+/start", "exec-start"),
    ("POST", r"/commit", "commit"),
    ("GET", r"/system/df", "df"),
    ("GET", r"/events", "events"),
]


class FakeEngine:
    """An engine that answers plausibly, but wedges, drops or garbles the routes it is told."""

    def __init__(self) -> None:
        self.wedged: set[str] = set()  # never answered
        self.dropped: set[str] = set()  # the connection is closed instead of an answer
        self.garbled: set[str] = set()  # answered with something that is no JSON
        self.failing: set[str] = set()  # answered with a 500
        self.images: set[str] = set()  # images present
        self.runner: web.AppRunner | None = None

    async def stop(self) -> None:
        """The engine goes away (its socket closes)."""
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = re.sub(r"^/v[0-9.]+", "", request.path)
        for method, pattern, name in ROUTES:
            found = re.fullmatch(pattern, path)
            if method == request.method and found:
                return await self._answer(request, name, found.groupdict())
        return _json({"message": f"no route {request.method} {path}"}, status=404)

    async def _answer(
        self, request: web.Request, name: str, parts: dict[str, str]
    ) -> web.StreamResponse:
        if name in self.wedged:
            await asyncio.Event().wait()
        if name in self.dropped:
            assert request.transport is not None
            request.transport.close()
            await asyncio.Event().wait()
        if name in self.garbled:
            return web.Response(text="<html>", content_type="application/json")
        if name in self.failing:
            return _json({"message": "boom"}, status=500)
        if name == "pull":
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b'{"status": "Pulling from somewhere"}\r\n')
            await asyncio.Event().wait()  # then no progress, ever
        return self._canned(name, parts)

    def _canned(self, name: str, parts: dict[str, str]) -> web.Response:
        if name == "version":
            return _json({"ApiVersion": "1.41", "Version": "20.10.0"})
        if name == "info":
            return _json(
                {
                    "NCPU": 2,
                    "MemTotal": 4 << 30,
                    "Driver": "overlay2",
                    "DriverStatus": [["Backing Filesystem", "extfs"]],
                    "DockerRootDir": "/nonexistent/fake-engine",
                }
            )
        if name == "image":
            if parts["name"] not in self.images:
                return _json({"message": "No such image"}, status=404)
            return _json({"Id": "sha256:fake", "RepoTags": [parts["name"]]})
        if name == "inspect":
            if parts["name"] != NAME:
                return _json({"message": "No such container"}, status=404)
            labels = {LABEL_HOST: HOST, LABEL_SANDBOX: "sb-1", LABEL_OWNER: "o"}
            return _json(
                {
                    "Id": "c1",
                    "Config": {"Image": "img", "Labels": labels},
                    "State": {"Status": "running", "Running": True},
                }
            )
        if name in ("images", "containers"):
            return _json([])
        if name in ("create", "exec", "commit"):
            return _json({"Id": "c1"}, status=201)
        return web.Response(status=204)


def _json(data: object, status: int = 200) -> web.Response:
    """A JSON answer as the engine sends it (aiodocker reads the error of exactly this type)."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[FakeEngine]:
    fake = FakeEngine()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.UnixSite(runner, str(tmp_path / "engine.sock"))
    await site.start()
    fake.runner = runner
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def runtime(engine: FakeEngine, tmp_path: Path) -> AsyncIterator[DockerRuntime]:
    async with open_docker(f"unix://{tmp_path / 'engine.sock'}") as docker:
        yield DockerRuntime(docker, HOST, bounds=SHORT)


Call = Callable[[DockerRuntime], Coroutine[Any, Any, object]]
SPEC = SandboxSpec(image="img")

BOUNDED: list[tuple[str, Call, str]] = [
    ("info", lambda r: r.engine_resources(), "reading engine info"),
    ("images", lambda r: r.local_images(), "listing images"),
    ("containers", lambda r: r.list_sandboxes(), "listing sandboxes"),
    ("containers", lambda r: r.all_containers(), "listing containers"),
    ("inspect", lambda r: r.inspect("sb-1"), "inspecting sandbox sb-1"),
    ("containers", lambda r: r.create("sb-2", SPEC, "o", 0), "looking for sandbox sb-2"),
    ("create", lambda r: r.create("sb-2", SPEC, "o", 0), "creating sandbox sb-2"),
    ("start", lambda r: r.create("sb-2", SPEC, "o", 0), "starting sandbox sb-2"),
    ("start", lambda r: r.start("sb-1"), "starting sandbox sb-1"),
    ("stop", lambda r: r.stop("sb-1", 0), "stopping sandbox sb-1"),
    ("remove", lambda r: r.remove("sb-1"), "removing sandbox sb-1"),
    ("exec", lambda r: r.open_exec("sb-1", ["ls"]), "starting a process in sandbox sb-1"),
    ("exec-start", lambda r: r.open_exec("sb-1", ["ls"]), "starting a process in sandbox sb-1"),
    ("stats", lambda r: r.stats("sb-1"), "reading the resource use of sandbox sb-1"),
    ("df", lambda r: r.disk_usage(), "reading the engine's disk usage"),
    ("image", lambda r: r.inspect_image("img"), "image img"),
    ("image-remove", lambda r: r.remove_image("img"), "removing image img"),
    ("pull", lambda r: r.ensure_image("img", "missing"), "pulling image img"),
    (
        "commit",
        lambda r: r.commit(
            "sb-1", repository="me/x", tag="1", message="", changes=[], config={}, pause=True
        ),
        "committing sandbox sb-1",
    ),
]


@pytest.mark.parametrize(("route", "call", "what"), BOUNDED, ids=[b[2] for b in BOUNDED])
async def test_every_engine_call_gives_up_on_a_wedged_engine(
    engine: FakeEngine, runtime: DockerRuntime, route: str, call: Call, what: str
) -> None:
    if route != "pull":
        engine.images.add("img")
    engine.wedged.add(route)
    with pytest.raises(TimedOut) as caught:
        await call(runtime)
    assert str(caught.value) == f"{what}: the Docker engine did not answer within {BOUND:g} s"


async def test_a_stop_may_take_its_grace_period_and_a_margin(
    engine: FakeEngine, runtime: DockerRuntime
) -> None:
    engine.wedged.add("stop")
    with pytest.raises(TimedOut) as caught:
        await runtime.stop("sb-1", 2)
    assert str(caught.value) == (
        f"stopping sandbox sb-1: the Docker engine did not answer within {2 + BOUND:g} s"
    )


# ---------------------------------------------------------------------------- a broken engine


BROKEN: list[tuple[str, Call, str]] = [
    ("inspect", lambda r: r.inspect("sb-1"), "inspecting sandbox sb-1"),
    ("containers", lambda r: r.list_sandboxes(), "listing sandboxes"),
    ("start", lambda r: r.start("sb-1"), "starting sandbox sb-1"),
    ("info", lambda r: r.engine_resources(), "reading engine info"),
]


@pytest.mark.parametrize(("route", "call", "what"), BROKEN, ids=[b[2] for b in BROKEN])
async def test_an_engine_that_hangs_up_is_a_transport_error(
    engine: FakeEngine, runtime: DockerRuntime, route: str, call: Call, what: str
) -> None:
    engine.dropped.add(route)
    with pytest.raises(TransportError) as caught:
        await call(runtime)
    assert type(caught.value) is TransportError
    assert str(caught.value) == f"{what}: the Docker engine broke off the request: " + (
        "Server disconnected"
    )


READ = [b for b in BROKEN if b[0] != "start"]  # a start's answer has no body to read


@pytest.mark.parametrize(("route", "call", "what"), READ, ids=[b[2] for b in READ])
async def test_an_unreadable_answer_is_a_protocol_error(
    engine: FakeEngine, runtime: DockerRuntime, route: str, call: Call, what: str
) -> None:
    engine.garbled.add(route)
    with pytest.raises(ProtocolError, match=rf"^{what}: the Docker engine answered something "):
        await call(runtime)


async def test_an_engine_error_is_a_sandbox_failure_naming_the_call(
    engine: FakeEngine, runtime: DockerRuntime
) -> None:
    engine.failing.add("start")
    with pytest.raises(SandboxFailed) as caught:
        await runtime.start("sb-1")
    assert str(caught.value) == "starting sandbox sb-1: engine answered 500: boom"


async def test_a_broken_event_stream_is_a_transport_error(
    engine: FakeEngine, runtime: DockerRuntime
) -> None:
    engine.dropped.add("events")
    with pytest.raises(TransportError) as caught:
        async for _ in runtime.events(0.0):
            pass
    assert str(caught.value) == (
        "watching the engine's events: the Docker engine broke off the request: Server disconnected"
    )


# ---------------------------------------------------------------------------- no engine at all

ENOENT_FIX = "no socket there: is dockerd running? (set DOCKER_HOST if it listens elsewhere)"


def rock(*args: str, env: dict[str, str], prefix: list[str] | None = None) -> Any:
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "rock_sdk._cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.fixture
def missing_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """DOCKER_HOST names a socket that does not exist (for agents this test starts)."""
    url = f"unix://{tmp_path / 'docker.sock'}"
    monkeypatch.setenv("DOCKER_HOST", url)
    return url


@pytest.fixture
def stale_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """DOCKER_HOST names a socket file no one listens on (dockerd died and left it)."""
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    return f"unix://{path}"


async def test_a_local_agent_without_an_engine_refuses_the_handshake_saying_why(
    missing_engine: str,
) -> None:
    with pytest.raises(EngineUnavailable) as caught:
        async with open_cluster(["local"]):
            pass
    assert str(caught.value) == f"no Docker engine answers at {missing_engine}: {ENOENT_FIX}"


async def test_a_stale_engine_socket_is_a_refused_connection(stale_engine: str) -> None:
    with pytest.raises(EngineUnavailable) as caught:
        async with open_cluster(["local"]):
            pass
    assert str(caught.value) == (
        f"no Docker engine answers at {stale_engine}: connection refused: is dockerd running?"
    )


def test_rock_says_one_line_and_exits_125_without_an_engine(missing_engine: str) -> None:
    done = rock("ps", env={"DOCKER_HOST": missing_engine})
    assert (done.returncode, done.stdout) == (125, "")
    assert done.stderr == f"rock ps: no Docker engine answers at {missing_engine}: {ENOENT_FIX}\n"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv, to take away root's right to any socket",
)
def test_rock_names_a_socket_it_may_not_use(tmp_path: Path) -> None:
    # An engine socket of another user, mode 0600; `rock` runs as root without
    # CAP_DAC_OVERRIDE, so the socket's mode applies to it as to any user outside the group.
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        sock.listen()
        os.chown(path, 65534, 65534)
        os.chmod(path, 0o600)
        caps = "-dac_override,-dac_read_search"
        without = ["setpriv", "--bounding-set", caps, "--inh-caps", caps]
        done = rock("ps", env={"DOCKER_HOST": f"unix://{path}"}, prefix=without)
    assert (done.returncode, done.stdout) == (125, "")
    assert done.stderr == (
        f"rock ps: no Docker engine answers at unix://{path}: permission denied: "
        "is this user in the docker group (or root)?\n"
    )


def test_the_message_names_each_cause_and_its_fix() -> None:
    def said(code: int) -> str:
        return str(engine_unavailable("tcp://e:2375", OSError(code, os.strerror(code))))

    assert said(errno.EACCES) == (
        "no Docker engine answers at tcp://e:2375: permission denied: "
        "is this user in the docker group (or root)?"
    )
    assert said(errno.EPERM) == said(errno.EACCES)
    assert said(errno.ENOENT) == f"no Docker engine answers at tcp://e:2375: {ENOENT_FIX}"
    assert said(errno.ECONNREFUSED) == (
        "no Docker engine answers at tcp://e:2375: connection refused: is dockerd running?"
    )
    assert said(errno.EHOSTUNREACH) == (
        "no Docker engine answers at tcp://e:2375: No route to host: is dockerd running? "
        "is this user in the docker group?"
    )


async def test_a_tcp_engine_that_refuses_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free, and nothing listens on it
    async with open_docker(f"tcp://127.0.0.1:{port}") as docker:
        with pytest.raises(EngineUnavailable) as caught:
            await DockerRuntime(docker, HOST).inspect("sb-1")
    assert str(caught.value) == (
        f"no Docker engine answers at tcp://127.0.0.1:{port}: connection refused: "
        "is dockerd running?"
    )


def test_only_our_errors_leave_the_mapping() -> None:
    for foreign in (ConnectionResetError(errno.ECONNRESET, "reset"), aiohttp.ClientPayloadError()):
        with pytest.raises(TransportError) as caught, engine_errors("reading"):
            raise foreign
        assert type(caught.value) is TransportError
    with pytest.raises(FileNotFound), engine_errors("reading"):
        raise FileNotFound("ours pass through")  # an OSError too, but ours


async def test_a_socket_agent_without_an_engine_keeps_serving_and_says_so_once(
    missing_engine: str, tmp_path: Path
) -> None:
    path = tmp_path / "agent.sock"
    host = f"edge-{secrets.token_hex(3)}"
    command = [sys.executable, "-m", "rock_agent", "serve", "--socket", str(path)]
    async with await anyio.open_process(
        [*command, "--host-id", host, "--reap-interval", "0.2"], stderr=subprocess.STDOUT
    ) as agent:
        try:
            for _ in range(2):
                await wait_for_socket(path)
                with pytest.raises(EngineUnavailable, match=r"^no Docker engine answers at "):
                    async with open_cluster([f"unix://{path}"]):
                        pass
            assert agent.returncode is None  # still serving
        finally:
            agent.terminate()
            code = await agent.wait()
        assert agent.stdout is not None
        lines = (await read_all(agent.stdout)).decode().splitlines()
    assert code == 0, lines
    records = [json.loads(line) for line in lines]  # one JSON record a line: no tracebacks
    said = [r["event"] for r in records if r["level"] not in ("debug", "info")]
    assert said == [
        f"no Docker engine answers at {missing_engine}: {ENOENT_FIX} "
        "(clients are refused until it answers)"
    ]


async def test_a_socket_agent_whose_engine_goes_away_keeps_serving(
    engine: FakeEngine, tmp_path: Path
) -> None:
    path = tmp_path / "agent.sock"
    command = [sys.executable, "-m", "rock_agent", "serve", "--socket", str(path)]
    command += ["--host-id", HOST, "--reap-interval", "0.2", "--lease", "1"]
    async with await anyio.open_process(
        command,
        stderr=subprocess.STDOUT,
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path / 'engine.sock'}"},
    ) as agent:
        try:
            await wait_for_socket(path)
            async with open_cluster([f"unix://{path}"]) as cluster:
                assert await cluster.list_host_sandboxes() == []
            await engine.stop()
            await anyio.sleep(1.5)  # the background loops meet the missing engine meanwhile
            for _ in range(2):
                with pytest.raises(EngineUnavailable, match=r"^no Docker engine answers at "):
                    async with open_cluster([f"unix://{path}"]):
                        pass
            assert agent.returncode is None  # still serving
        finally:
            agent.terminate()
            code = await agent.wait()
        assert agent.stdout is not None
        lines = (await read_all(agent.stdout)).decode().splitlines()
    assert code == 0, lines
    records = [json.loads(line) for line in lines]  # one JSON record a line: no tracebacks
    assert [r for r in records if r["level"] in ("error", "critical")] == []


async def read_all(stream: Any) -> bytes:
    chunks = []
    with contextlib.suppress(anyio.EndOfStream):
        while True:
            chunks.append(await stream.receive())
    return b"".join(chunks)


async def wait_for_socket(path: Path) -> None:
    with anyio.fail_after(30):
        while not path.exists():  # noqa: ASYNC110 (another process makes it)
            await anyio.sleep(0.05)


# ---------------------------------------------------------------------------- the real engine


async def docker_json(*args: str) -> Any:
    return json.loads((await anyio.run_process(["docker", *args])).stdout)


def containers_of(sandbox_id: str) -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={LABEL_SANDBOX}={sandbox_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


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
    execution, stream = await runtime.open_exec(sandbox_id, ["true"])
    try:
        with pytest.raises(TransportError) as caught:
            for _ in range(64):  # 64 MiB: more than any buffer on the way
                await stream.write_in(b"x" * (1 << 20))
        assert type(caught.value) is TransportError
        assert str(caught.value).startswith(f"writing to a process in sandbox {sandbox_id}: the ")
        assert await runtime.wait_exit(execution) == 0
    finally:
        await runtime.close_stream(stream)


async def test_input_to_a_closed_stream_is_a_transport_error(
    plain_box: tuple[DockerRuntime, str],
) -> None:
    runtime, sandbox_id = plain_box
    _, stream = await runtime.open_exec(sandbox_id, ["cat"])
    await runtime.close_stream(stream)
    with pytest.raises(TransportError) as caught:
        await stream.write_in(b"late")
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
