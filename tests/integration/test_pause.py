"""Pause and resume against real Docker: the SDK (`Sandbox.pause`/`resume`, `pause_after`),
the resume on use (commands, sessions, files, exec, a port forward), and `rock pause|resume`
with `rock ps` showing the state."""

from __future__ import annotations

import json
import sys
import urllib.request

import anyio
import pytest

from rock_core import BadRequest, Cluster, SandboxState
from rock_sdk import Sandbox, SandboxConfig

from ..conftest import SH_IMAGE
from .test_timeouts import wait_state

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

EXIT_ERROR = 125
STEP = 60.0  # seconds a wait may take before the test fails (never a timing assertion)


async def rock(*args: str) -> tuple[int, str, str]:
    result = await anyio.run_process([sys.executable, "-m", "rock_sdk._cli", *args], check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def start(cluster: Cluster, **options: object) -> Sandbox:
    sb = Sandbox(SandboxConfig(image=SH_IMAGE, memory="64m", **options), cluster=cluster)  # type: ignore[arg-type]
    await sb.start()
    return sb


async def paused(sb: Sandbox) -> bool:
    status = await sb.status()
    assert status.state is SandboxState.RUNNING  # paused or not, its lifecycle runs
    return status.paused


async def until_paused(sb: Sandbox) -> None:
    with anyio.fail_after(STEP):
        while True:
            if await paused(sb):
                return
            await anyio.sleep(0.1)


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        body: bytes = response.read()
        return body


async def test_a_paused_sandbox_resumes_on_each_kind_of_use(cluster: Cluster) -> None:
    sb = await start(cluster)
    try:
        await sb.arun("X=kept; mkdir -p /www; echo served > /www/f")
        await sb.arun("busybox httpd -p 127.0.0.1:8000 -h /www")
        uses = {
            "session command": lambda: sb.arun("echo $X"),
            "exec": lambda: sb.execute(["cat", "/www/f"]),
            "read": lambda: sb.read_text("/www/f"),
            "write": lambda: sb.write_text("/tmp/w", "w"),
        }
        for name, use in uses.items():
            await sb.pause()
            assert await paused(sb), name
            result = await use()
            assert not await paused(sb), f"{name} did not resume it"
            if name == "session command":
                assert result.output == "kept\n"  # type: ignore[union-attr]
        await sb.pause()
        async with sb.expose_port(8000) as (host, port):
            body = await anyio.to_thread.run_sync(http_get, f"http://{host}:{port}/f")
        assert body == b"served\n"
        assert not await paused(sb)
        await sb.resume()
        await sb.resume()  # idempotent
        await sb.pause()
        await sb.pause()  # idempotent
        await sb.stop()  # a paused sandbox stops
        with pytest.raises(BadRequest, match=r"is not running \(exited\); start it first"):
            await sb.pause()
    finally:
        await sb.delete()


@pytest.mark.slow
async def test_pause_after_pauses_an_idle_sandbox_and_a_command_resumes_it(
    cluster: Cluster,
) -> None:
    sb = await start(cluster, pause_after=1.0, idle_timeout=600)
    try:
        await until_paused(sb)
        deadlines = (await sb.status()).deadlines
        assert deadlines is not None and deadlines.idle_timeout == 600  # its clocks go on
        assert (await sb.arun("echo awake")).output == "awake\n"
        assert not await paused(sb)
        await until_paused(sb)  # idle again for as long: paused again
    finally:
        await sb.delete()


@pytest.mark.slow
async def test_the_idle_timeout_still_runs_while_paused(cluster: Cluster) -> None:
    sb = await start(cluster, pause_after=1.0, idle_timeout=3.0)
    try:
        await until_paused(sb)
        record = cluster.record(sb.sandbox_id)
        await wait_state(record, SandboxState.STOPPED, STEP)
        assert record.history[-1].reason.startswith("expired: idle for ")
        # Resumed before its SIGTERM: its init ended on it, not on a SIGKILL after the grace.
        info = (await sb.status()).info
        assert info is not None and (info.state, info.exit_code) == ("exited", 143)
    finally:
        await sb.delete()


@pytest.mark.parametrize("value", [float("nan"), -1.0, 1e12])
def test_a_bad_pause_after_is_refused(value: float) -> None:
    with pytest.raises(BadRequest, match="pause_after"):
        SandboxConfig(pause_after=value).to_spec()


async def test_rock_pause_and_resume_by_prefix_and_ps_shows_it(cluster: Cluster) -> None:
    sb = await start(cluster)
    try:
        prefix = sb.sandbox_id[:-3]
        assert await rock("pause", prefix) == (0, f"{sb.sandbox_id}\n", "")
        assert await rock("pause", prefix) == (0, f"{sb.sandbox_id}\n", ""), "idempotent"
        code, out, err = await rock("ps")
        row = next(line for line in out.splitlines() if line.startswith(sb.sandbox_id))
        assert (code, err, row.split()[2]) == (0, "", "paused")
        code, out, _ = await rock("ps", "--json")
        rows = [json.loads(line) for line in out.splitlines()]
        assert [r["state"] for r in rows if r["sandbox_id"] == sb.sandbox_id] == ["paused"]
        assert await rock("resume", prefix) == (0, f"{sb.sandbox_id}\n", "")
        assert not await paused(sb)
        assert await rock("pause", sb.sandbox_id) == (0, f"{sb.sandbox_id}\n", "")
        # The owner's agent learnt of the pause from the engine: its next use resumes it.
        assert (await sb.arun("echo owner")).output == "owner\n"
        assert not await paused(sb)
    finally:
        await sb.delete()


async def test_rock_pause_errors_are_clear_and_the_others_are_done(cluster: Cluster) -> None:
    sb = await start(cluster)
    stopped = await start(cluster)
    try:
        await stopped.stop()
        code, out, err = await rock("pause", "sb-nope-1", sb.sandbox_id, stopped.sandbox_id)
        assert (code, out) == (EXIT_ERROR, f"{sb.sandbox_id}\n")
        assert err == (
            "rock pause: no sandbox 'sb-nope-1' on any host\n"
            f"rock pause: sandbox {stopped.sandbox_id} is not running (exited); start it first\n"
        )
        code, out, err = await rock("resume", stopped.sandbox_id)
        assert (code, out) == (EXIT_ERROR, "")
        assert err == (
            f"rock resume: sandbox {stopped.sandbox_id} is not running (exited); "
            "nothing to resume\n"
        )
    finally:
        await sb.delete()
        await stopped.delete()
