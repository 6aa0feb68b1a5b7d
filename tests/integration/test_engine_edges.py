"""The engine boundary against a fake engine that wedges, hangs up, garbles or goes away.

The fake engine (an aiohttp server on a unix socket) stands in for a wedged or misbehaving
one, driven through the agent's own `open_docker` and `DockerRuntime`, and under a socket
agent whose engine goes away. No engine at all is `test_engine_missing`; what the real engine
refuses is `test_engine_refusals`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from rock_agent._docker import DockerRuntime
from rock_agent._engine import Bounds, open_docker
from rock_agent._labels import LABEL_HOST, LABEL_OWNER, LABEL_SANDBOX
from rock_core import open_cluster
from rock_core._errors import (
    EngineUnavailable,
    ProtocolError,
    SandboxFailed,
    TimedOut,
    TransportError,
)
from rock_core._protocol import SandboxSpec

from ._engine_edges import HOST, log_records, wait_for_socket

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
                    "Image": "img",  # the engine names the image by id; this one answers to it
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
    ("exec", lambda r: r.exec("sb-1", ["ls"]), "starting a process in sandbox sb-1"),
    ("exec-start", lambda r: r.exec("sb-1", ["ls"]), "starting a process in sandbox sb-1"),
    ("stats", lambda r: r.stats("sb-1"), "reading the resource use of sandbox sb-1"),
    ("df", lambda r: r.disk_usage(), "reading the engine's disk usage"),
    ("image", lambda r: r.inspect_image("img"), "image img"),
    ("image-remove", lambda r: r.remove_image("img"), "removing image img"),
    ("pull", lambda r: r.ensure_image("img", "missing"), "pulling image img"),
    (
        "commit",
        lambda r: r.commit(
            "sb-1", repository="me/x", tag="1", message="", changes=[], labels={}, pause=True
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


# ---------------------------------------------------------------------------- the engine goes away


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
            await agent.wait()
        records = await log_records(agent)
    assert [r for r in records if r["level"] in ("error", "critical")] == []
