"""A daemon nobody can stop: hang-ups, bad handshakes, floods and exhaustion on a socket agent.

Each attack is followed by a good client, which must still be served; the agent process must
still run; a client's own connection errors never reach another.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest

from rock_core import _protocol as p
from rock_core._channel import WINDOW
from rock_core._endpoint import HELLO_MAX_FRAME, RECEIVE_BUDGET
from rock_core._errors import ERROR_CLASSES
from rock_core._framing import DEFAULT_MAX_FRAME, frame

from ._agents import RawClient, SocketAgent, serves

ROUNDS = 19
HELLO = p.Hello(protocol=p.PROTOCOL_VERSION, client="t", owner="o")


def _hangup_after(agent: SocketAgent, *frames: bytes) -> None:
    """Send `frames`, then close at once, before any reply can be read."""
    with RawClient(agent.socket) as client:
        for data in frames:
            client.send_raw(data)


ATTACKS: dict[str, list[bytes]] = {
    "not a hello first": [frame(p.encode(p.Ping(id=1)))],
    "a wrong version": [
        frame(p.encode(p.Hello(protocol=p.PROTOCOL_VERSION + 1, client="t", owner="o")))
    ],
    "no owner": [frame(msgspec.msgpack.encode({"op": "hello", "protocol": 1, "client": "t"}))],
    "a plain hello": [frame(p.encode(HELLO))],
    "a second hello": [frame(p.encode(HELLO)), frame(p.encode(HELLO))],
    "a reused request id": [
        frame(p.encode(HELLO)),
        frame(p.encode(p.ListSandboxes(id=5))),
        frame(p.encode(p.ListSandboxes(id=5))),
    ],
    "garbage": [b"\x00\x00\x00\x03abc"],
    "half a frame": [b"\x00\x00\x10\x00partial"],
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_client_that_hangs_up_early_never_stops_the_agent(
    socket_agent: SocketAgent, attack: str
) -> None:
    for _ in range(ROUNDS):
        _hangup_after(socket_agent, *ATTACKS[attack])
    assert serves(socket_agent)
    assert socket_agent.alive
    assert "Traceback" not in socket_agent.log_text()


def test_bad_first_frames_are_answered_with_a_typed_error(socket_agent: SocketAgent) -> None:
    cases = [
        (frame(p.encode(p.Ping(id=1))), "protocol", "expected hello first, got 'ping'"),
        (
            frame(p.encode(p.Hello(protocol=99, client="t", owner="o"))),
            "protocol",
            "client speaks protocol 99; agent ",
        ),
        (
            frame(msgspec.msgpack.encode({"op": "hello", "protocol": 1, "client": "t"})),
            "bad_request",
            "invalid 'hello' request: ",
        ),
    ]
    for data, code, message in cases:
        with RawClient(socket_agent.socket) as client:
            client.send_raw(data)
            reply = client.read()
            assert isinstance(reply, p.ErrorReply) and reply.id == 0
            assert reply.code == code and reply.message.startswith(message), reply
            assert client.read() is None, "the agent ends a connection that failed its handshake"


def test_a_bad_request_fails_alone_and_the_link_stays(socket_agent: SocketAgent) -> None:
    with RawClient(socket_agent.socket) as client:
        client.hello()
        bad = {"op": "create", "id": 7, "sandbox_id": "x", "spec": {"image": "i", "env": {"A": 1}}}
        client.send(bad)
        reply = client.read()
        assert isinstance(reply, p.ErrorReply) and reply.id == 7 and reply.code == "bad_request"
        assert reply.message == "invalid 'create' request: spec.env[...]: Expected `str`, got `int`"
        client.send({"op": "teleport", "id": 8})
        reply = client.read()
        assert isinstance(reply, p.ErrorReply) and (reply.id, reply.code) == (8, "bad_request")
        assert reply.message == "unknown request kind 'teleport'"
        client.send_raw(frame(b"\xc1"))
        reply = client.read()
        assert isinstance(reply, p.ErrorReply) and (reply.id, reply.code) == (0, "protocol")
        for request_id in (9, 9):  # a reused id is answered on id 0: id 9 still has its own
            client.send(p.Keepalive(id=request_id, sandbox_id="nope"))
        answers = [client.read(), client.read()]
        codes = sorted((a.id, a.code) for a in answers if isinstance(a, p.ErrorReply))
        # Either the first had finished when the second came (two answers on id 9), or the
        # second was refused on id 0 while the first ran.
        assert codes in (
            [(0, "protocol"), (9, "sandbox_not_found")],
            [(9, "sandbox_not_found"), (9, "sandbox_not_found")],
        ), codes
        assert isinstance(client.call(p.Ping(id=client.new_id())), p.Pong)


def test_a_huge_first_frame_is_refused_before_it_is_read(socket_agent: SocketAgent) -> None:
    with RawClient(socket_agent.socket) as client:
        client.send_raw(struct.pack(">I", HELLO_MAX_FRAME + 1))
        reply = client.read()
        assert isinstance(reply, p.ErrorReply) and reply.code == "protocol"
        assert reply.message == (
            f"peer announced a frame of {HELLO_MAX_FRAME + 1} bytes; "
            f"the maximum is {HELLO_MAX_FRAME}"
        )
        assert client.read() is None


def test_clients_that_never_finish_a_big_frame_cost_no_memory(socket_agent: SocketAgent) -> None:
    def rss() -> int:
        assert socket_agent.process is not None
        status = Path(f"/proc/{socket_agent.process.pid}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) << 10

    def stall(client: RawClient) -> None:
        # A whole 16 MiB frame but its last byte; the agent reads only what its budget allows,
        # so the rest waits in the socket and this send gives up.
        client.sock.settimeout(8)
        with contextlib.suppress(OSError):
            client.send_raw(struct.pack(">I", DEFAULT_MAX_FRAME) + bytes(DEFAULT_MAX_FRAME - 1))

    before = rss()
    clients = [RawClient(socket_agent.socket) for _ in range(40)]
    try:
        for client in clients:
            client.hello()
        with ThreadPoolExecutor(len(clients)) as pool:
            list(pool.map(stall, clients))
        # 40 unfinished 16 MiB frames would be 640 MiB if buffered; the agent holds at most its
        # receive budget (256 MiB) across all of them.
        assert rss() - before < RECEIVE_BUDGET + (96 << 20)
        assert serves(socket_agent)  # small frames never wait for the budget
    finally:
        for client in clients:
            client.close()
    assert serves(socket_agent)


def test_a_silent_client_is_dropped_at_the_handshake_deadline(socket_agent: SocketAgent) -> None:
    with RawClient(socket_agent.socket, timeout=60) as client:
        assert client.read() is None, "the agent closes a connection that never says hello"


@pytest.mark.slow
def test_hundreds_of_idle_connections_do_not_lock_out_a_good_client(
    socket_agent: SocketAgent,
) -> None:
    idle = [RawClient(socket_agent.socket) for _ in range(500)]
    try:
        assert serves(socket_agent)
    finally:
        for client in idle:
            client.close()
    assert serves(socket_agent)


def test_stream_data_past_the_credit_fails_that_request_only(socket_agent: SocketAgent) -> None:
    with RawClient(socket_agent.socket) as client:
        client.hello()
        ping = client.call(p.Ping(id=client.new_id()))
        assert isinstance(ping, p.Pong)
        sandbox_id = "rel-credit"
        created = client.call(
            p.CreateSandbox(
                id=client.new_id(),
                sandbox_id=sandbox_id,
                spec=p.SandboxSpec(image="rock-test/busybox:latest", memory=64 << 20),
            )
        )
        assert isinstance(created, p.SandboxReply), created
        try:
            upload_id = client.new_id()
            client.send(p.Upload(id=upload_id, sandbox_id=sandbox_id, path="/tmp"))
            credit = client.read()
            assert credit == p.StreamCredit(id=upload_id, chunks=WINDOW)
            chunk = frame(p.encode(p.StreamData(id=upload_id, data=b"\x00" * 512)))
            client.send_raw(chunk * (WINDOW * 8))  # one burst, far past the credit
            while True:
                reply = client.read()
                if isinstance(reply, p.ErrorReply) and reply.id == upload_id:
                    break
            assert reply.code == "protocol"
            assert reply.message == "the client sent stream data past the credit granted"
            assert isinstance(client.call(p.Ping(id=client.new_id())), p.Pong)
            # Data sent with the request itself, before any credit: refused the same way.
            early_id = client.new_id()
            early = p.Upload(id=early_id, sandbox_id=sandbox_id, path="/tmp")
            data = frame(p.encode(p.StreamData(id=early_id, data=b"x")))
            client.send_raw(frame(p.encode(early)) + data)
            while True:
                reply = client.read()
                if isinstance(reply, p.ErrorReply) and reply.id == early_id:
                    break
            assert (reply.code, reply.message) == (
                "protocol",
                "the client sent stream data without credit",
            )
        finally:
            done = client.call(p.RemoveSandbox(id=client.new_id(), sandbox_id=sandbox_id))
            assert isinstance(done, p.Done), done
    assert socket_agent.alive


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def test_running_out_of_file_descriptors_does_not_kill_the_agent(
    docker_engine: None, tmp_path: Path
) -> None:
    agent = SocketAgent(tmp_path).start(preexec=_low_fd_limit)
    try:
        flood: list[socket.socket] = []
        try:
            for _ in range(200):  # far past the limit of 64
                sock = socket.socket(socket.AF_UNIX)
                sock.settimeout(5)
                sock.connect(str(agent.socket))
                flood.append(sock)
            time.sleep(1.0)  # the agent meets EMFILE while these are open
            assert agent.alive
        finally:
            for sock in flood:
                sock.close()
        deadline = time.monotonic() + 30
        while True:  # descriptors come back once the flood's handshakes are dropped
            try:
                if serves(agent):
                    break
            except (OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert agent.alive
        assert "cannot accept a connection" in agent.log_text()
    finally:
        agent.stop()
        agent.remove_containers()


def test_every_error_code_the_agent_sends_is_one_of_ours(socket_agent: SocketAgent) -> None:
    with RawClient(socket_agent.socket) as client:
        client.hello()
        for request in (
            p.InspectSandbox(id=client.new_id(), sandbox_id="nope"),
            p.RunCommand(id=client.new_id(), sandbox_id="nope", session="s", command="ls"),
            p.ReadFile(id=client.new_id(), sandbox_id="nope", path="/etc/passwd"),
        ):
            reply = client.call(request)
            assert isinstance(reply, p.ErrorReply)
            assert reply.code in ERROR_CLASSES and reply.code not in (
                "rock_error",
                "internal_error",
            )
