"""A sandbox an agent adopted after a restart, then removed and created again, is new: a
missing session of it is not blamed on the restart."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from rock_core import _protocol as p

from ..conftest import SH_IMAGE
from ._agents import RawClient, SocketAgent

SPEC = p.SandboxSpec(image=SH_IMAGE, memory=64 << 20)


def _missing_session(client: RawClient, sandbox_id: str) -> str:
    run = p.RunCommand(id=client.new_id(), sandbox_id=sandbox_id, session="gone", command="true")
    reply = client.call(run)
    assert isinstance(reply, p.ErrorReply) and reply.code == "session_not_found", reply
    return reply.message


def _create(client: RawClient, sandbox_id: str) -> None:
    created = client.call(p.CreateSandbox(id=client.new_id(), sandbox_id=sandbox_id, spec=SPEC))
    assert isinstance(created, p.SandboxReply), created


def test_a_re_created_sandbox_is_not_called_adopted(docker_engine: None) -> None:
    agent = SocketAgent(Path(tempfile.mkdtemp(prefix="rock-adopted-"))).start()
    try:
        with RawClient(agent.socket) as a:
            a.hello("owner-r")
            _create(a, "re-1")
        agent.kill()
        agent.start()
        with RawClient(agent.socket) as a:
            a.hello("owner-r")
            deadline = time.monotonic() + 30  # adoption runs in the background after start
            while "restart" not in _missing_session(a, "re-1") and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _missing_session(a, "re-1") == (
                "sandbox re-1 has no session 'gone' (sessions do not survive an agent restart:"
                " this agent adopted the sandbox from its labels; create the session again)"
            )
            assert isinstance(a.call(p.RemoveSandbox(id=a.new_id(), sandbox_id="re-1")), p.Done)
            _create(a, "re-1")
            assert _missing_session(a, "re-1") == "sandbox re-1 has no session 'gone'"
            assert isinstance(a.call(p.RemoveSandbox(id=a.new_id(), sandbox_id="re-1")), p.Done)
    finally:
        agent.stop()
        leaked = agent.containers()
        agent.remove_containers()
    assert not leaked, f"containers left behind: {leaked}"
