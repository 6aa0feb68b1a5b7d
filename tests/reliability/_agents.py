"""Real agents and raw clients for the reliability suite: no SDK between the test and the wire.

`SocketAgent` runs `rock-agent serve --socket` as its own process under a host id of its own,
so its containers are this test's alone; `RawClient` speaks frames over a blocking unix socket,
so a test can send exactly the bytes it wants, hang up at any moment, and see every reply.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from rock_core import _protocol as p
from rock_core._framing import FrameDecoder, frame

from ..conftest import labelled_containers

AGENT_START_TIMEOUT = 30.0


def engine_containers(host_id: str) -> list[str]:
    """Ids of every container (any state) an agent of `host_id` made."""
    return labelled_containers(f"rock.host={host_id}")


class SocketAgent:
    """`rock-agent serve --socket` in a process of its own; `stop()` ends it."""

    def __init__(
        self, workdir: Path, *, lease: float = 60.0, reap_interval: float = 2.0, **env: str
    ) -> None:
        self.host_id = f"rel-{secrets.token_hex(4)}"
        self.socket = workdir / f"{self.host_id}.sock"
        self.log = workdir / f"{self.host_id}.log"
        self.lease = lease
        self.reap_interval = reap_interval
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"unix://{self.socket}"

    def start(self, *, preexec: Any = None) -> SocketAgent:
        command = [
            sys.executable,
            "-m",
            "rock_agent",
            "serve",
            "--socket",
            str(self.socket),
            "--host-id",
            self.host_id,
            "--lease",
            str(self.lease),
            "--reap-interval",
            str(self.reap_interval),
        ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **self.env},
                start_new_session=True,
                preexec_fn=preexec,
            )
        deadline = time.monotonic() + AGENT_START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None:
                raise AssertionError(f"the agent exited at start:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the agent did not listen:\n{self.tail()}")
            time.sleep(0.02)
        return self

    def answers(self) -> bool:
        with socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(2.0)
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
        return True

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is cleaned up."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def containers(self) -> list[str]:
        return engine_containers(self.host_id)

    def remove_containers(self) -> None:
        found = self.containers()
        if found:
            subprocess.run(["docker", "rm", "-f", *found], capture_output=True)


class RawClient:
    """A blocking frame-level client of an agent's unix socket."""

    def __init__(self, path: Path, *, timeout: float = 15.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.decoder = FrameDecoder()
        self.pending: list[bytes] = []
        self.next_id = 1

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: p.Message | dict[str, Any]) -> None:
        payload = (
            p.encode(message) if isinstance(message, p.Message) else msgspec.msgpack.encode(message)
        )
        self.sock.sendall(frame(payload))

    def read(self, timeout: float | None = None) -> p.AgentMessage | None:
        """The next message, or None at end of stream; `TimeoutError` when none comes."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while not self.pending:
            try:
                data = self.sock.recv(1 << 16)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.pending.extend(self.decoder.feed(data))
        return p.decode_agent_message(self.pending.pop(0))

    def hello(self, owner: str = "", **fields: Any) -> p.Welcome:
        self.send(
            p.Hello(
                protocol=p.PROTOCOL_VERSION, client="reliability", owner=owner or _owner(), **fields
            )
        )
        reply = self.read()
        assert isinstance(reply, p.Welcome), reply
        return reply

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def call(self, request: p.Request, *, timeout: float = 60.0) -> p.AgentMessage:
        """Send `request`; return its final reply (events skipped)."""
        self.send(request)
        deadline = time.monotonic() + timeout
        while True:
            message = self.read(max(0.01, deadline - time.monotonic()))
            if message is None:
                raise ConnectionError("the agent closed the connection")
            if isinstance(message, p.Reply) and message.id == request.id:
                return message


def _owner() -> str:
    return f"rel-owner-{secrets.token_hex(4)}"


def serves(agent: SocketAgent) -> bool:
    """A good client can still handshake and ping."""
    with RawClient(agent.socket) as client:
        client.hello()
        reply = client.call(p.Ping(id=client.new_id()), timeout=15)
        return isinstance(reply, p.Pong)
