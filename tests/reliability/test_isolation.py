"""Owners are isolated: owner B cannot see, use, change or take owner A's sandbox.

Owners are scoped by the user the kernel names for the connection (`SO_PEERCRED`): a client of
another uid claiming A's very owner string is still someone else.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_agent._routes import HANDLERS
from rock_core import _protocol as p
from rock_core._framing import FrameDecoder, frame
from rock_core._messages_checkpoint import CheckpointSandbox

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
    """One request of every kind that names a sandbox, but a create (ids are filled in later);
    a test checks that none is left out."""
    return [
        p.InspectSandbox(id=1, sandbox_id=sandbox_id),
        p.StopSandbox(id=1, sandbox_id=sandbox_id, timeout=1),
        p.StartSandbox(id=1, sandbox_id=sandbox_id),
        p.RemoveSandbox(id=1, sandbox_id=sandbox_id),
        p.CreateSession(id=1, sandbox_id=sandbox_id, session="s"),
        p.RunCommand(id=1, sandbox_id=sandbox_id, session="main", command="cat /secret"),
        p.SendInput(id=1, sandbox_id=sandbox_id, session="main", data=b"x"),
        # Authorized from the session the agent holds, not by asking the engine.
        p.Expect(id=1, sandbox_id=sandbox_id, session="main", patterns=["."], timeout=1),
        p.WaitCommand(id=1, sandbox_id=sandbox_id, session="main", timeout=1),
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
        p.ListenPort(id=1, sandbox_id=sandbox_id),
        p.ClaimConnection(id=1, sandbox_id=sandbox_id, listen=1, connection=1),
        p.SetTimeouts(id=1, sandbox_id=sandbox_id, lifetime=1),
        p.Keepalive(id=1, sandbox_id=sandbox_id),
        p.ReadLogs(id=1, sandbox_id=sandbox_id),
        p.ExecuteStreamed(id=1, sandbox_id=sandbox_id, argv=["cat", "/secret"]),
        p.OpenTerminal(id=1, sandbox_id=sandbox_id, argv=["cat", "/secret"]),
        p.ResizeTerminal(id=1, sandbox_id=sandbox_id, terminal=1, rows=30, cols=100),
        p.PauseSandbox(id=1, sandbox_id=sandbox_id),
        p.ResumeSandbox(id=1, sandbox_id=sandbox_id),
        CheckpointSandbox(id=1, sandbox_id=sandbox_id, checkpoint_id="ck-stolen"),
    ]


def test_every_request_that_names_a_sandbox_is_tried() -> None:
    naming = {
        kind
        for kind in HANDLERS
        if "sandbox_id" in kind.__struct_fields__ and kind is not p.CreateSandbox
    }
    assert {type(r) for r in requests_on("x")} == naming
    assert len(requests_on("x")) == len(naming) == 30


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


# ------------------------------------------------------------------------- images of users


def _commit(client: RawClient, sandbox_id: str, image: str) -> p.AgentMessage:
    return client.call(p.CommitSandbox(id=client.new_id(), sandbox_id=sandbox_id, image=image))


def _image_id(reference: str) -> str:
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", reference],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def _dry_prune(prefix: str) -> p.PruneImages:
    return p.PruneImages(id=1, max_bytes=0, only=[f"{prefix}/*"], dry_run=True)


def test_a_user_s_committed_images_are_that_user_s(shared_agent: SocketAgent) -> None:
    prefix = f"rock-owners-{secrets.token_hex(4)}"
    mine, base = f"{prefix}/a:1", _image_id(SH_IMAGE)
    made = [mine, f"{prefix}/b:1"]
    try:
        with _a_with_secret(shared_agent, "owner-a", "isolated-4") as a:
            first = _commit(a, "isolated-4", mine)
            assert isinstance(first, p.ImageReply)
            made.append(first.image.image_id)
            labels = subprocess.run(
                ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", mine],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert json.loads(labels)["rock-kit.committer"] == f"{os.getuid()}:owner-a"
            more = p.WriteFile(id=a.new_id(), sandbox_id="isolated-4", path="/a", data=b"a" * 4096)
            assert isinstance(a.call(more), p.Done)
            assert isinstance(_commit(a, "isolated-4", mine), p.ImageReply)  # its own: replaced
            taken = _commit(a, "isolated-4", SH_IMAGE)  # a pulled image belongs to no one
            assert isinstance(taken, p.ErrorReply) and taken.code == "already_exists"
            assert taken.message == (
                f"image {SH_IMAGE} already exists (made by no sandbox commit): a commit replaces"
                " only an image its own user committed; commit to another name"
            )
            assert _image_id(SH_IMAGE) == base
            a.call(p.RemoveSandbox(id=a.new_id(), sandbox_id="isolated-4"))
        hello = p.Hello(protocol=p.PROTOCOL_VERSION, client="t", owner="owner-b")

        def as_b(request: p.Request) -> p.AgentMessage | None:  # one request, then hang up
            return _as_user(NOBODY, shared_agent.socket, [hello, request])[1]

        created = as_b(p.CreateSandbox(id=1, sandbox_id="isolated-5", spec=SPEC))
        write = p.WriteFile(id=1, sandbox_id="isolated-5", path="/b", data=b"B's" * 1000)
        assert isinstance(as_b(write), p.Done)
        refused = as_b(p.CommitSandbox(id=1, sandbox_id="isolated-5", image=mine))
        committed = as_b(p.CommitSandbox(id=1, sandbox_id="isolated-5", image=f"{prefix}/b:1"))
        b_prune = as_b(_dry_prune(prefix))
        assert isinstance(as_b(p.RemoveSandbox(id=1, sandbox_id="isolated-5")), p.Done)
        assert isinstance(created, p.SandboxReply), created
        assert isinstance(refused, p.ErrorReply) and refused.code == "already_exists"
        assert refused.message == (
            f"image {mine} already exists (made by user {os.getuid()}): a commit replaces only"
            " an image its own user committed; commit to another name"
        )
        assert isinstance(committed, p.ImageReply), committed
        # Prune passes over another user's committed images (even for that user's
        # administrator); root's administrator may remove every one.
        assert isinstance(b_prune, p.PruneReply), b_prune
        assert [i.tags for i in b_prune.result.removed] == [[f"{prefix}/b:1"]]
        admin = p.Hello(protocol=p.PROTOCOL_VERSION, client="t", owner="x", admin=True)
        _, b_admin = _as_user(NOBODY, shared_agent.socket, [admin, _dry_prune(prefix)])
        assert isinstance(b_admin, p.PruneReply)
        assert [i.tags for i in b_admin.result.removed] == [[f"{prefix}/b:1"]]
        with RawClient(shared_agent.socket) as root:
            root.hello("the-cli", admin=True)
            everything = root.call(_dry_prune(prefix))
            assert isinstance(everything, p.PruneReply)
            assert sorted(t for i in everything.result.removed for t in i.tags) == [
                f"{prefix}/a:1",
                f"{prefix}/b:1",
            ]
    finally:
        subprocess.run(["docker", "rmi", "-f", *made], capture_output=True, check=False)
