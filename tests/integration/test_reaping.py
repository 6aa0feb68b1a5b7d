"""No container outlives its owner; a bad peer never crashes the agent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from rock_core._framing import FrameDecoder, frame
from rock_core._protocol import (
    PROTOCOL_VERSION,
    ErrorReply,
    Hello,
    Ping,
    Pong,
    Welcome,
    decode_agent_message,
    encode,
)

from ..conftest import SH_IMAGE, labelled_containers

OWNER_PROGRAM = textwrap.dedent(
    f"""
    import anyio, sys
    from rock_sdk import Sandbox, SandboxConfig
    async def main():
        sb = Sandbox(SandboxConfig(image={SH_IMAGE!r}))
        await sb.start()
        await sb.arun("sleep 600 &")
        print(sb.sandbox_id, flush=True)
        await anyio.sleep(600)
    anyio.run(main)
    """
)


def sandbox_containers(sandbox_id: str) -> list[str]:
    return labelled_containers(f"rock.sandbox={sandbox_id}")


def wait_gone(sandbox_id: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not sandbox_containers(sandbox_id):
            return True
        time.sleep(0.2)
    return False


def start_owner() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER_PROGRAM], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    sandbox_id = proc.stdout.readline().strip()
    assert sandbox_id.startswith("sb-"), sandbox_id
    assert sandbox_containers(sandbox_id)
    return proc, sandbox_id


def agent_of(pid: int) -> int:
    out = subprocess.run(
        ["pgrep", "-P", str(pid), "-f", "rock_agent"], capture_output=True, text=True
    )
    return int(out.stdout.split()[0])


def test_owner_killed_its_sandboxes_are_reaped(docker_engine: None) -> None:
    proc, sandbox_id = start_owner()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert wait_gone(sandbox_id, 30), f"sandbox {sandbox_id} outlived its owner"


def test_owner_and_agent_killed_next_agent_reaps(docker_engine: None) -> None:
    proc, sandbox_id = start_owner()
    agent = agent_of(proc.pid)
    # Freeze the owner first: it would reconnect to a new agent when its agent dies.
    proc.send_signal(signal.SIGSTOP)
    os.kill(agent, signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    assert sandbox_containers(sandbox_id), "nobody was left to reap it yet"
    # Any agent started on this host reaps containers whose owner process is gone.
    result = subprocess.run(
        [sys.executable, "-m", "rock_sdk._cli", "ps", "-q"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert wait_gone(sandbox_id, 30), f"sandbox {sandbox_id} was not reaped"


def _agent() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "rock_agent", "serve", "--stdio", "--log-level", "ERROR"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _exchange(proc: subprocess.Popen[bytes], data: bytes) -> object:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(data)
    proc.stdin.flush()
    decoder = FrameDecoder()
    while True:
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, "the agent closed its output"
        frames = decoder.feed(chunk)
        if frames:
            return decode_agent_message(frames[0])


def test_agent_survives_garbage_and_wrong_versions(docker_engine: None) -> None:
    agent = _agent()
    try:
        reply = _exchange(agent, frame(encode(Hello(protocol=999, client="t", owner="x"))))
        assert isinstance(reply, ErrorReply)
        assert reply.code == "protocol"
        assert "client speaks protocol 999" in reply.message
    finally:
        agent.kill()
        agent.wait()
    agent = _agent()
    try:
        hello = frame(encode(Hello(protocol=PROTOCOL_VERSION, client="t", owner="local:x:1:1:1")))
        assert isinstance(_exchange(agent, hello), Welcome)
        # A well-framed message that is not a message: an error reply, then the link closes.
        reply = _exchange(agent, frame(b"\x93garbage"))
        assert isinstance(reply, ErrorReply)
        assert "undecodable message from client" in reply.message
    finally:
        agent.kill()
        agent.wait()
    agent = _agent()
    try:
        hello = frame(encode(Hello(protocol=PROTOCOL_VERSION, client="t", owner="local:x:1:1:1")))
        assert isinstance(_exchange(agent, hello), Welcome)
        assert isinstance(_exchange(agent, frame(encode(Ping(id=1)))), Pong)
        # An unknown sandbox is an error on that request only; the link stays usable.
        from rock_core._protocol import InspectSandbox

        reply = _exchange(agent, frame(encode(InspectSandbox(id=2, sandbox_id="nope"))))
        assert isinstance(reply, ErrorReply)
        assert reply.code == "sandbox_not_found"
        assert isinstance(_exchange(agent, frame(encode(Ping(id=3)))), Pong)
    finally:
        agent.kill()
        agent.wait()
