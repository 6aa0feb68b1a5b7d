"""Protocol fuzzing against a real socket agent with real sandboxes behind it.

Hostile connections (see `fuzz.py`) must get only typed errors, never an internal one; after
each batch a good client is still served; another owner's sandbox is never touched; and
when the fuzzing is over, nothing is left behind.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rock_core import _protocol as p
from rock_core._errors import ERROR_CLASSES
from rock_core._framing import FrameDecoder

from ..conftest import SH_IMAGE
from ._agents import RawClient, SocketAgent, serves
from .fuzz import hostile_session

EXAMPLES = 300
BATCH = 25
QUIET = 0.3  # seconds of silence after which a fuzzing client hangs up
FUZZER, BYSTANDER = "fuzzer", "bystander"
SPEC = p.SandboxSpec(image=SH_IMAGE, memory=64 << 20)
UNTYPED = ("rock_error", "internal_error")


class Target:
    def __init__(self, agent: SocketAgent) -> None:
        self.agent = agent
        self.ids = ["fuzz-own", "fuzz-other", "nope", "x/../fuzz-other"]
        self.examples = 0
        self.errors: dict[str, int] = {}


@pytest.fixture(scope="module")
def target(docker_engine: None) -> Iterator[Target]:
    # A lease longer than any run: the owners disconnect, and their sandboxes must outlive
    # the fuzzing however slow the machine is.
    agent = SocketAgent(Path(tempfile.mkdtemp(prefix="rock-fuzz-")), lease=3600.0).start()
    try:
        for owner, sandbox_id in ((FUZZER, "fuzz-own"), (BYSTANDER, "fuzz-other")):
            with RawClient(agent.socket) as client:
                client.hello(owner)
                create = p.CreateSandbox(id=client.new_id(), sandbox_id=sandbox_id, spec=SPEC)
                assert isinstance(client.call(create), p.SandboxReply)
                secret = p.WriteFile(
                    id=client.new_id(), sandbox_id=sandbox_id, path="/secret", data=b"mine"
                )
                assert isinstance(client.call(secret), p.Done)
        yield Target(agent)
    finally:
        try:
            for owner in (FUZZER, BYSTANDER):
                with RawClient(agent.socket) as client:
                    client.hello(owner)
                    listed = client.call(p.ListSandboxes(id=client.new_id()))
                    assert isinstance(listed, p.SandboxListReply)
                    for info in listed.sandboxes:
                        removed = client.call(
                            p.RemoveSandbox(id=client.new_id(), sandbox_id=info.sandbox_id)
                        )
                        assert isinstance(removed, p.Done), removed
        finally:
            agent.stop()
            leaked = agent.containers()
            agent.remove_containers()
        assert not leaked, f"containers left behind: {leaked}"


def replies_to(path: Path, data: bytes) -> list[p.AgentMessage]:
    """Send `data` on a fresh connection; every message the agent answers until it goes quiet."""
    got: list[p.AgentMessage] = []
    decoder = FrameDecoder(1 << 30)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(QUIET)
        sock.connect(str(path))
        try:
            sock.sendall(data)
            while chunk := sock.recv(1 << 16):
                got.extend(p.decode_agent_message(f) for f in decoder.feed(chunk))
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass
    return got


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_hostile_input_gets_typed_errors_and_the_agent_serves_on(
    target: Target, data: st.DataObject
) -> None:
    agent = target.agent
    session = data.draw(hostile_session(FUZZER, target.ids))
    for reply in replies_to(agent.socket, session):
        if isinstance(reply, p.ErrorReply):
            assert reply.code in ERROR_CLASSES and reply.code not in UNTYPED, reply
            target.errors[reply.code] = target.errors.get(reply.code, 0) + 1
    target.examples += 1
    if target.examples % BATCH == 0:
        assert agent.alive, agent.tail()
        assert serves(agent)


def test_after_the_fuzzing_the_bystander_is_untouched(target: Target) -> None:
    assert target.examples > 0, "runs after the fuzz test"
    assert target.agent.alive and serves(target.agent)
    with RawClient(target.agent.socket) as client:
        client.hello(BYSTANDER)
        read = client.call(p.ReadFile(id=client.new_id(), sandbox_id="fuzz-other", path="/secret"))
        assert isinstance(read, p.FileReply) and read.data == b"mine"
    assert "Traceback" not in target.agent.log_text(), target.agent.tail()
    assert sum(target.errors.values()) > target.examples // 2, target.errors
