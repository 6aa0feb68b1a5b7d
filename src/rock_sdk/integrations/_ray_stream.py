"""The core's side of the Ray transport: a `Connector` whose byte stream is actor calls.

`RayAgentConnector(node_id)` reaches the agent of one Ray node through that node's relay
actor (`_ray_relay`): ``connect()`` opens a stream on the actor, and the stream's ``send``,
``receive`` and ``aclose`` are the actor's ``send``, ``receive`` (a long poll) and ``close``.

Rules:
- One detached actor per node, named ``rock-agent-<node id>`` in the ``rock`` namespace,
  pinned to its node (``NodeAffinitySchedulingStrategy``, not soft) with ``num_cpus=0``, and
  restarted by Ray if its worker crashes (``max_restarts=-1``). The first ``connect`` creates
  it (or finds one an earlier program made); a later ``connect`` only looks it up by name, so an
  actor someone removed (``ray.kill``) stays removed: the link fails, the cluster's grace runs
  out, its sandboxes are `lost`, and the agent reaps them when the owner's lease ends.
- Every Ray failure becomes one of ours: a malformed node id is `BadRequest`; a node that is not
  alive is `HostUnreachable`; ray missing or not initialised, a dead or unreachable actor, or a
  call that failed on it is `TransportError` with Ray's reason. Ray's exceptions never leave.
- Awaiting a call works on asyncio and trio: the call's ``concurrent.futures`` future is
  awaited, never a thread blocked in ``ray.get``.
- A cancelled ``receive`` loses no bytes (the offset it asked for is asked again, see
  `_ray_relay`). ``send`` keeps up to `WINDOW` calls (`WINDOW_BYTES`) in flight, numbered by
  offset, and
  waits only for the oldest: a failed send is raised by a later one, as a socket's would be,
  and by every one after it (a cancelled wait for the oldest keeps it to wait for again).
- No call is submitted once this process has left Ray: Ray would start a local cluster of
  its own for it. A blocked lookup of the actor is abandoned by a cancelled ``connect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import sniffio

from rock_core import BadRequest, ByteStream, HostUnreachable, TransportError

from ._ray_relay import POLL, RayAgentRelay

NAMESPACE = "rock"
OPEN_TIMEOUT = 120.0  # seconds for a first open: Ray starts a worker, the agent starts
CALL_SLACK = 30.0  # seconds past its own wait that a receive may take before the link is cut
CLOSE_TIMEOUT = 5.0
WINDOW = 8  # sends a stream keeps in flight before it waits for the oldest
# Bytes of sends in flight past which a stream waits for the oldest (one larger send still goes
# alone): below the relay's MAX_EARLY, which 8 sends of large frames, reordered, would pass.
WINDOW_BYTES = 32 << 20
MAX_CONCURRENCY = 10_000  # calls one actor runs at once: a long poll per stream, and sends
_NODE_ID = re.compile(r"[0-9a-f]{56}")


def import_ray() -> Any:
    """The ``ray`` module, or `BadRequest` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise BadRequest(
            f"the Ray transport needs ray: pip install '.[ray]' from a clone of rock-kit ({exc})"
        ) from exc
    return ray


def actor_name(node_id: str) -> str:
    """The relay actor's name for the node `node_id`."""
    return f"rock-agent-{node_id}"


class RayAgentConnector:
    """Reaches the agent on Ray node `node_id` through its relay actor (see the rules above).

    `host_id` is the agent's host id (default: the node's address); the agent listens on the
    node at ``<socket_dir>/<host id>/agent.sock`` (default `socket_dir`:
    ``/tmp/rock-ray-<uid>``; a folder per host id, since several Ray nodes may share a
    machine); `agent` is the command that starts it there (default: the actor's interpreter
    with ``-m rock_agent``), `idle_exit` the seconds it lingers with no link and no sandbox.
    An actor that exists already (another program's) is used as it was made: these settings
    of a later connector do not change it. ``ray.init`` must have run in this process
    (`ray_hosts` does it).
    """

    leased = True  # the agent outlives the actor: the owner's lease decides

    def __init__(
        self,
        node_id: str,
        *,
        host_id: str | None = None,
        socket_dir: str | None = None,
        agent: Sequence[str] | None = None,
        idle_exit: float = 600.0,
    ) -> None:
        if not isinstance(node_id, str) or not _NODE_ID.fullmatch(node_id):
            raise BadRequest(f"node_id must be a Ray node id (56 hex digits), got {node_id!r}")
        if host_id is not None and not _host_id_ok(host_id):
            raise BadRequest(f"host_id must be 1-64 of [A-Za-z0-9._:-], got {host_id!r}")
        if socket_dir is not None and (
            not isinstance(socket_dir, str) or not socket_dir.startswith("/") or "\0" in socket_dir
        ):
            raise BadRequest(f"socket_dir must be an absolute path, got {socket_dir!r}")
        if agent is not None and not _command_ok(agent):
            raise BadRequest(f"agent must be a non-empty list of words, got {agent!r}")
        if isinstance(idle_exit, bool) or not isinstance(idle_exit, int | float):
            raise BadRequest(f"idle_exit must be a number of seconds, got {idle_exit!r}")
        if not 0 <= idle_exit < float("inf"):
            raise BadRequest(f"idle_exit must be 0 (never) or positive seconds, got {idle_exit!r}")
        self.node_id = node_id
        self.host_id = host_id
        self.socket_dir = socket_dir  # None: the relay's default, for the node's user
        self.agent = list(agent) if agent is not None else None
        self.idle_exit = float(idle_exit)
        self._created = False

    @property
    def name(self) -> str:
        """``ray://<node id>``."""
        return f"ray://{self.node_id}"

    def __repr__(self) -> str:
        return f"RayAgentConnector({self.node_id!r})"

    def connect(self) -> AbstractAsyncContextManager[ByteStream]:
        """Open a stream to the node's agent through its actor (creating it the first time)."""
        return self._open()

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[ByteStream]:
        ray = import_ray()
        # Abandoned if cancelled: with Ray's control store gone, its calls block for minutes.
        actor = await anyio.to_thread.run_sync(self._actor, ray, abandon_on_cancel=True)
        with anyio.move_on_after(OPEN_TIMEOUT) as scope:
            stream_id = await call(ray, actor.open, self.name)
        if scope.cancelled_caught:
            raise TransportError(
                f"{self.name}: the actor did not open a stream in {OPEN_TIMEOUT:g} s"
            )
        stream = RayStream(ray, actor, stream_id, self.name)
        try:
            yield stream
        finally:
            await stream.aclose()

    def _actor(self, ray: Any) -> Any:
        """The node's actor (blocking GCS calls: run in a worker thread)."""
        if not ray.is_initialized():
            raise TransportError(
                f"{self.name}: this process has not joined a Ray cluster: call ray.init(address)"
                " first, or open the cluster on ray_hosts(address)"
            )
        name = actor_name(self.node_id)
        if self._created:
            try:
                return ray.get_actor(name, namespace=NAMESPACE)
            except ValueError as exc:
                raise TransportError(
                    f"{self.name}: its agent actor {name} is gone (killed, or its node died)"
                ) from exc
            except Exception as exc:  # Ray's own errors (GCS unreachable...)
                raise TransportError(f"{self.name}: cannot look up actor {name}: {exc}") from exc
        node = self._alive_node(ray)
        host_id = self.host_id or str(node.get("NodeManagerAddress") or self.node_id[:16])
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        try:
            actor = (
                actor_class(ray, RayAgentRelay)
                .options(
                    name=name,
                    namespace=NAMESPACE,
                    lifetime="detached",
                    get_if_exists=True,
                    num_cpus=0,
                    max_restarts=-1,
                    max_concurrency=MAX_CONCURRENCY,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(self.node_id, soft=False),
                )
                .remote(host_id, self.socket_dir, self.agent, self.idle_exit)
            )
        except Exception as exc:  # Ray's own errors
            raise TransportError(f"{self.name}: cannot create actor {name}: {exc}") from exc
        self._created = True
        return actor

    def _alive_node(self, ray: Any) -> dict[str, Any]:
        try:
            table = ray.nodes()
        except Exception as exc:  # Ray's own errors
            raise TransportError(f"{self.name}: cannot read Ray's node list: {exc}") from exc
        for entry in table:
            if entry.get("NodeID") == self.node_id:
                if entry.get("Alive"):
                    return dict(entry)
                raise HostUnreachable(f"{self.name}: Ray node {self.node_id} is dead")
        raise HostUnreachable(f"{self.name}: no Ray node has id {self.node_id}")


def actor_class(ray: Any, cls: type) -> Any:
    """`cls` as a Ray actor class, made once per process (`ray.remote` of it again would be a
    new class to Ray)."""
    made = _actor_classes.get(cls)
    if made is None:
        made = _actor_classes[cls] = ray.remote(cls)
    return made


_actor_classes: dict[type, Any] = {}


class RayStream:
    """A `ByteStream` carried by calls on a relay actor (see `_ray_relay`)."""

    def __init__(self, ray: Any, actor: Any, stream_id: int, name: str) -> None:
        self._ray = ray
        self._actor = actor
        self._id = stream_id
        self._name = name
        self._offset = 0  # bytes received so far: the offset the next receive asks for
        self._sent = 0  # bytes given to `send` so far: the offset of the next one
        self._rest = b""  # bytes received past what the caller asked for, for the next call
        # Sends not yet answered, oldest first, with their sizes.
        self._inflight: deque[tuple[Future[Any], int]] = deque()
        self._inflight_bytes = 0
        self._failed: TransportError | None = None  # the first send that failed
        self._closed = False

    async def send(self, item: bytes, /) -> None:
        """Send `item` to the agent: up to `WINDOW` sends stay in flight, unawaited.

        A send that failed is raised by the next send (or `drain`), as a socket's would be, and
        by every one after it: the bytes after a gap would never be written.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        while self._inflight and (
            self._inflight[0][0].done()
            or len(self._inflight) >= WINDOW
            or self._inflight_bytes + len(item) > WINDOW_BYTES
        ):
            await self._settle()
        future = submit(self._ray, self._actor.send, self._name, self._id, self._sent, bytes(item))
        self._sent += len(item)
        self._inflight.append((future, len(item)))
        self._inflight_bytes += len(item)

    async def drain(self) -> None:
        """Wait until every send so far is written on the actor (raising the first failure)."""
        while self._inflight:
            await self._settle()

    async def _settle(self) -> None:
        """Wait for the oldest send; taken off only once answered, so a cancelled wait loses
        no failure (the next wait sees it)."""
        if self._failed is not None:
            raise TransportError(f"{self._name}: an earlier send failed: {self._failed}")
        try:
            await answer(self._ray, self._inflight[0][0], self._name)
        except TransportError as exc:
            self._failed = exc
            raise
        self._inflight_bytes -= self._inflight.popleft()[1]

    async def receive(self, max_bytes: int = 65536, /) -> bytes:
        """The next bytes from the agent (at most `max_bytes`); `anyio.EndOfStream` once it
        closed. A chunk handed out again may be longer than this call asks for (its first
        caller asked for more): the rest waits here for the next call."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._rest:
            data, self._rest = self._rest[:max_bytes], self._rest[max_bytes:]
            return data
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            asked = (self._id, self._offset, max_bytes, POLL)
            future = submit(self._ray, self._actor.receive, self._name, *asked)
            with anyio.move_on_after(POLL + CALL_SLACK) as scope:
                data, eof = await answer(self._ray, future, self._name)
            if scope.cancelled_caught:
                raise TransportError(
                    f"{self._name}: no answer from its actor in {POLL + CALL_SLACK:g} s"
                )
            self._offset += len(data)
            if data:
                data = bytes(data)
                self._rest = data[max_bytes:]
                return data[:max_bytes]
            if eof:
                raise anyio.EndOfStream

    async def aclose(self) -> None:
        """Close the stream on the actor (best effort: a dead actor closed it already)."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
            with contextlib.suppress(TransportError):
                await self.drain()  # the bytes sent before the close go before it
            with contextlib.suppress(TransportError):
                future = submit(self._ray, self._actor.close, self._name, self._id)
                await answer(self._ray, future, self._name)


def submit(ray: Any, method: Any, name: str, *args: Any, what: str = "agent actor") -> Future[Any]:
    """Call the actor's `method` with `args`: its answer's future, or `TransportError`.

    Never once this process has left Ray (``ray.shutdown``, or a cluster that closed): Ray
    would start a local cluster of its own to submit the call, and fail it anyway.
    """
    if not ray.is_initialized():
        raise TransportError(f"{name}: this process has left its Ray cluster (ray.shutdown)")
    try:
        return method.remote(*args).future()  # type: ignore[no-any-return]
    except Exception as exc:  # Ray's own errors, raised as they are or as plain Exception
        raise TransportError(f"{name}: cannot call its {what}: {_reason(exc)}") from exc


async def call(ray: Any, method: Any, name: str, *args: Any, what: str = "agent actor") -> Any:
    """The result of calling the actor's `method` with `args`, Ray's failures as ours (`what`:
    the actor, in their words)."""
    return await answer(ray, submit(ray, method, name, *args, what=what), name, what)


async def answer(ray: Any, future: Future[Any], name: str, what: str = "agent actor") -> Any:
    """The result of an actor call's `future`, with Ray's failures as `TransportError`."""
    try:
        return await wait_future(future)
    except ray.exceptions.RayActorError as exc:
        raise TransportError(f"{name}: its {what} is gone or unreachable: {_reason(exc)}") from exc
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None) or exc
        raise TransportError(f"{name}: the actor call failed: {cause}") from exc
    except ray.exceptions.RayError as exc:
        raise TransportError(f"{name}: Ray failed: {_reason(exc)}") from exc


async def wait_future(future: Future[Any]) -> Any:
    """Await a ``concurrent.futures`` future on asyncio or trio (no thread waits on it).

    A cancelled wait leaves the future alone: Ray still completes it, and nobody reads it.
    """
    done = anyio.Event()
    if sniffio.current_async_library() == "asyncio":
        loop = asyncio.get_running_loop()

        def wake(_: Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(done.set)

    else:
        import trio

        token = trio.lowlevel.current_trio_token()

        def wake(_: Future[Any]) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

    future.add_done_callback(wake)
    await done.wait()
    return future.result()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _host_id_ok(host_id: object) -> bool:
    return isinstance(host_id, str) and re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", host_id) is not None


def _command_ok(agent: object) -> bool:
    words = list(agent) if isinstance(agent, list | tuple) else None
    return bool(words) and all(isinstance(w, str) and w and "\0" not in w for w in words or ())


__all__ = ["RayAgentConnector", "RayStream", "actor_name", "import_ray"]
