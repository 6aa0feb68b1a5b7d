"""Running the requests of one agent connection: each in a worker task, to one final answer.

A task started per request cost the agent more CPU than the rest of handling a session command
(`docs/benchmarks.md`, "Session path"); a worker that has answered a request waits for the
next one instead, so a connection reuses the few tasks its concurrency needs.

Rules:
- Every worker is a task of the connection's task group: closing the connection cancels the
  idle ones and the busy ones alike. No request waits for a worker: with none idle, a new one
  starts (as many as requests in flight). At most `IDLE_WORKERS` stay idle; others end.
- Each request runs in its own cancel scope (`Cancel` cancels it) and ends with exactly one
  final answer: the handler's reply, an `ErrorReply` for the `RockError` it raised, or an
  `InternalError` for anything else (logged with its traceback), a cancellation nobody asked
  for included (`_request_failure`). A real cancellation (the connection ends) or a
  `KeyboardInterrupt` ends the worker, as it ended the request's own task before.
- A worker runs in the context copied when it started (as a request's own task did), and
  later requests run in it too: a handler must not set context variables (none does; the
  agent sets its own, such as `_engine_timing`'s observer, before it serves).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Protocol

import anyio
import sniffio
from anyio.abc import TaskGroup

from ._errors import BadRequest, RockError, TimedOut, TransportError
from ._protocol import ErrorReply, Message, Reply, Request
from ._request_failure import answerable, internal_error

IDLE_WORKERS = 32  # idle worker tasks a connection keeps for its next requests


class RequestConnection(Protocol):
    """What running a request needs of its connection (`_endpoint.Connection`)."""

    async def send(self, message: Message) -> None:
        """Send a message; `TransportError` if the peer is gone."""

    async def send_quietly(self, message: Message) -> None:
        """Send a message if the peer is still there."""

    def _finish(self, request_id: int) -> RockError | None:
        """Forget a request that ended; the protocol violation that failed it, if any."""


class RequestHandler(Protocol):
    """What decides each request (`_endpoint.AgentHandler`)."""

    async def handle(self, conn: Any, request: Request) -> Reply:
        """Carry out one request and return its reply (or raise a `RockError`)."""


class _Idle:
    """One idle worker: the request it is handed, and the event that wakes it."""

    __slots__ = ("job", "wake")

    def __init__(self) -> None:
        self.wake = anyio.Event()
        self.job: tuple[Request, anyio.CancelScope] | None = None


class RequestWorkers:
    """The worker tasks of one connection (see the module rules)."""

    def __init__(self, tg: TaskGroup, conn: RequestConnection, handler: RequestHandler) -> None:
        self._tg = tg
        self._conn = conn
        self._handler = handler
        self._idle: list[_Idle] = []
        self.started = 0  # worker tasks started so far (a statistic, and for tests)

    @property
    def idle(self) -> int:
        """Workers waiting for a request."""
        return len(self._idle)

    def submit(self, request: Request, scope: anyio.CancelScope) -> None:
        """Run `request` in `scope` in an idle worker, or in a new one if none is idle."""
        if self._idle:
            idle = self._idle.pop()
            idle.job = (request, scope)
            idle.wake.set()
            return
        self.started += 1
        self._tg.start_soon(self._work, request, scope)

    async def _work(self, request: Request, scope: anyio.CancelScope) -> None:
        job: tuple[Request, anyio.CancelScope] | None = (request, scope)
        while job is not None:
            await run_request(self._conn, self._handler, *job)
            if len(self._idle) >= IDLE_WORKERS or _stray_cancel_seen():
                return
            idle = _Idle()
            self._idle.append(idle)
            try:
                await idle.wake.wait()
            except BaseException:  # the connection is closing (the only cancel that gets here)
                if idle.job is None:
                    self._idle.remove(idle)
                else:  # handed a request as it closed: free what that request holds
                    self._conn._finish(idle.job[0].id)
                raise
            job = idle.job


def _stray_cancel_seen() -> bool:
    """Whether this asyncio task took a cancellation nobody asked for (`_request_failure`):
    its count stays, and would make a later handler's `asyncio.TaskGroup` report the wrong
    error, so such a worker ends instead of serving again."""
    if sniffio.current_async_library() != "asyncio":
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def run_request(
    conn: RequestConnection,
    handler: RequestHandler,
    request: Request,
    scope: anyio.CancelScope,
) -> None:
    """Carry out `request` in `scope` and send its one final answer (see the module rules)."""
    reply: Reply
    try:
        with scope:
            reply = await handler.handle(conn, request)
        if scope.cancelled_caught:
            reply = error_reply(request.id, TimedOut("request cancelled"))
    except RockError as exc:
        reply = error_reply(request.id, exc)
    except BaseException as exc:
        if not answerable(exc):  # a real cancellation, or the process is told to end
            raise
        reply = error_reply(request.id, internal_error(type(request).__name__, exc))
    finally:
        violation = conn._finish(request.id)
    if violation is not None:
        reply = error_reply(request.id, violation)
    try:
        await conn.send(reply)
    except TransportError:
        pass
    except BadRequest as exc:  # too large to frame: this request fails, the link goes on
        tag = request.__struct_config__.tag
        error = BadRequest(f"the answer to this {tag!r} request cannot be sent: {exc.message}")
        await conn.send_quietly(error_reply(request.id, error))


def error_reply(request_id: int, exc: RockError) -> ErrorReply:
    """The `ErrorReply` carrying `exc` (its details that the wire can carry)."""
    details = {k: v for k, v in exc.details.items() if _plain(v)}
    return ErrorReply(id=request_id, code=exc.code, message=exc.message, details=details)


def _plain(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool) or value is None


__all__ = ["IDLE_WORKERS", "RequestWorkers", "error_reply", "run_request"]
