"""Owners are isolated: owner B cannot see, use, change or take owner A's sandbox.

Owners are scoped by the user the kernel names for the connection (`SO_PEERCRED`): a client of
another uid claiming A's very owner string is still someone else.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_core import _protocol as p
from rock_core._framing import FrameDecoder, frame

from ..conftest import SH_IMAGE
from ._agents import RawClient, SocketAgent

NOBODY = 65534
SPEC = p.SandboxSpec(image=SH_IMAGE, memory=64 << 20)


@pytest.fixture
def shared_agent(docker_engine: None) -> Iterator[SocketAgent]:
    """A socket agent whose socket every user may reach (as a shared host's agent is)."""
    workdir = Path(tempfile.mkdtemp(prefix="rock-isolation-"))
    workdir.chmod(0o755)
    agent = SocketAgent(workdir).start()
    agent.socket.chmod(0o666)
    try:
        yield agent
    finally:
        agent.stop()
        leaked = agent.containers()
        agent.remove_containers()
        assert not leaked, f"containers left behind: {leaked}"


def requests_on(sandbox_id: str) -> list[p.Request]:
    """One request of every kind that names a sandbox (ids are filled in later)."""
    return [
        p.InspectSandbox(id=1, sandbox_id=sandbox_id),
        p.StopSandbox(id=1, sandbox_id=sandbox_id, timeout=1),
        p.StartSandbox(id=1, sandbox_id=sandbox_id),
        p.RemoveSandbox(id=1, sandbox_id=sandbox_id),
        p.CreateSession(id=1, sandbox_id=sandbox_id, session="s"),
        p.RunCommand(id=1, sandbox_id=sandbox_id, session="main", command="cat /secret"),
        p.SendInput(id=1, sandbox_id=sandbox_id, session="main", data=b"x"),
        p.Interrupt(id=1, sandbox_id=sandbox_id, session="main"),
        p.CloseSession(id=1, sandbox_id=sandbox_id, session="main"),
        p.Execute(id=1, sandbox_id=sandbox_id, argv=["cat", "/secret"]),
        p.ReadFile(id=1, sandbox_id=sandbox_id, path="/secret"),
        p.WriteFile(id=1, sandbox_id=sandbox_id, path="/secret", data=b"owned"),
        p.Download(id=1, sandbox_id=sandbox_id, path="/secret"),
        p.Upload(id=1, sandbox_id=sandbox_id, path="/"),
        p.ReadStats(id=1, sandbox_id=sandbox_id),
        p.CommitSandbox(id=1, sandbox_id=sandbox_id, image="stolen/copy:1"),
        p.ForwardPort(id=1, sandbox_id=sandbox_id, port=80),
        p.SetTimeouts(id=1, sandbox_id=sandbox_id, lifetime=1),
        p.Keepalive(id=1, sandbox_id=sandbox_id),
    ]


def _a_with_secret(agent: SocketAgent, owner: str, sandbox_id: str) -> RawClient:
    a = RawClient(agent.socket)
    a.hello(owner)
    assert isinstance(
        a.call(p.CreateSandbox(id=a.new_id(), sandbox_id=sandbox_id, spec=SPEC)), p.SandboxReply
    )
    write = p.WriteFile(id=a.new_id(), sandbox_id=sandbox_id, path="/secret", data=b"A's")
    assert isinstance(a.call(write), p.Done)
    session = p.CreateSession(id=a.new_id(), sandbox_id=sandbox_id, session="main")
    assert isinstance(a.call(session), p.Done)
    return a


def _check_untouched(a: RawClient, sandbox_id: str) -> None:
    info = a.call(p.InspectSandbox(id=a.new_id(), sandbox_id=sandbox_id))
    assert isinstance(info, p.SandboxReply) and info.sandbox.state == "running"
    assert info.sandbox.sessions == ["main"]
    data = a.call(p.ReadFile(id=a.new_id(), sandbox_id=sandbox_id, path="/secret"))
    assert isinstance(data, p.FileReply) and data.data == b"A's"


def test_another_owner_of_the_same_user_cannot_touch_a_sandbox(shared_agent: SocketAgent) -> None:
    sandbox_id = "isolated-1"
    with (
        _a_with_secret(shared_agent, "owner-a", sandbox_id) as a,
        RawClient(shared_agent.socket) as b,
    ):
        b.hello("owner-b")
        for request in requests_on(sandbox_id):
            request.id = b.new_id()
            reply = b.call(request)
            assert isinstance(reply, p.ErrorReply), (request, reply)
            assert reply.code == "sandbox_not_found", (request, reply)
            assert reply.message == f"no sandbox {sandbox_id!r} on host {shared_agent.host_id}"
        listed = b.call(p.ListSandboxes(id=b.new_id(), owner="owner-a"))
        assert isinstance(listed, p.SandboxListReply) and listed.sandboxes == []
        taken = b.call(p.CreateSandbox(id=b.new_id(), sandbox_id=sandbox_id, spec=SPEC))
        assert isinstance(taken, p.ErrorReply) and taken.code == "already_exists"
        assert taken.message == (
            f"sandbox id {sandbox_id!r} is taken on host {shared_agent.host_id} by another "
            "owner: choose another id"
        )
        _check_untouched(a, sandbox_id)
        a.call(p.RemoveSandbox(id=a.new_id(), sandbox_id=sandbox_id))


def test_an_administrator_sees_and_removes_every_owner_s_sandbox(shared_agent: SocketAgent) -> None:
    sandbox_id = "isolated-2"
    with (
        _a_with_secret(shared_agent, "owner-a", sandbox_id) as a,
        RawClient(shared_agent.socket) as admin,
    ):
        admin.hello("the-cli", admin=True)
        listed = admin.call(p.ListSandboxes(id=admin.new_id()))
        assert isinstance(listed, p.SandboxListReply)
        assert [s.sandbox_id for s in listed.sandboxes] == [sandbox_id]
        created = admin.call(p.CreateSandbox(id=admin.new_id(), sandbox_id="by-admin", spec=SPEC))
        assert isinstance(created, p.ErrorReply) and created.code == "bad_request"
        assert (
            created.message == "an administrator's connection owns no sandboxes: it cannot create"
        )
        removed = admin.call(p.RemoveSandbox(id=admin.new_id(), sandbox_id=sandbox_id))
        assert isinstance(removed, p.Done)
        gone = a.call(p.InspectSandbox(id=a.new_id(), sandbox_id=sandbox_id))
        assert isinstance(gone, p.ErrorReply) and gone.code == "sandbox_not_found"


def _as_user(uid: int, path: Path, messages: list[p.Message]) -> list[p.AgentMessage | None]:
    """Send `messages` on one connection from a child process running as `uid`; one answer
    each (None where the agent ended the connection)."""
    payload = b"".join(frame(p.encode(m)) for m in messages)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Python file access after setuid, just the socket
        try:
            os.close(read_end)
            os.setgid(uid)
            os.setuid(uid)
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(60)
            sock.connect(str(path))
            sock.sendall(payload)
            received = b""
            decoder = FrameDecoder()
            frames: list[bytes] = []
            while len(frames) < len(messages):
                data = sock.recv(1 << 16)
                if not data:
                    break
                received += data
                frames.extend(decoder.feed(data))
            os.write(write_end, received)
        finally:
            os._exit(0)
    os.close(write_end)
    out = b""
    while chunk := os.read(read_end, 1 << 16):
        out += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    replies: list[p.AgentMessage | None] = [
        p.decode_agent_message(f) for f in FrameDecoder().feed(out)
    ]
    return replies + [None] * (len(messages) - len(replies))


def test_another_user_claiming_the_same_owner_is_someone_else(shared_agent: SocketAgent) -> None:
    sandbox_id = "isolated-3"
    with _a_with_secret(shared_agent, "owner-a", sandbox_id) as a:
        hello = p.Hello(protocol=p.PROTOCOL_VERSION, client="t", owner="owner-a")
        probes: list[p.Message] = [hello]
        for index, request in enumerate(requests_on(sandbox_id), start=1):
            request.id = index
            probes.append(request)
        welcome, *replies = _as_user(NOBODY, shared_agent.socket, probes)
        assert isinstance(welcome, p.Welcome)
        by_id = {r.id: r for r in replies if isinstance(r, p.ErrorReply)}
        for probe in probes[1:]:
            assert isinstance(probe, p.Request)
            reply = by_id.get(probe.id)
            assert reply is not None and reply.code == "sandbox_not_found", (probe, replies)
        admin = p.Hello(protocol=p.PROTOCOL_VERSION, client="t", owner="x", admin=True)
        welcome, listed = _as_user(NOBODY, shared_agent.socket, [admin, p.ListSandboxes(id=1)])
        assert isinstance(listed, p.SandboxListReply) and listed.sandboxes == [], (
            "another user's administrator sees none of root's sandboxes"
        )
        _check_untouched(a, sandbox_id)
        a.call(p.RemoveSandbox(id=a.new_id(), sandbox_id=sandbox_id))
