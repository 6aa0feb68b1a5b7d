"""A request whose body is a byte stream the caller sends under the agent's credit (an upload,
an image build's context), answered by one reply.

Rules:
- The sender never runs ahead of the agent's credit (`AgentConnection.send_chunks` takes one
  credit per chunk), and the chunk source is closed on every exit (`aclosing`).
- The sender and the reply reader run as two tasks. A reply ends the sender (the agent may
  answer, with an error, before it has read everything). A failure both of them see (the agent
  died) is raised once, alone, never as an exception group, and with the reader's words for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import TypeVar

import anyio

from rock_core import AgentConnection, RockError, TransportError
from rock_core.protocol import Reply, Request, raise_for_reply

LINK_GRACE = 10.0  # seconds the reply reader has to notice a link the sender found broken

R = TypeVar("R", bound=Reply)


async def call_streamed(
    conn: AgentConnection,
    request: Request,
    chunks: Callable[[], AsyncGenerator[bytes, None]],
    expect: type[R],
    what: str,
) -> R:
    """Send `request`, then the stream `chunks()` makes under credit; return its reply.

    `what` names the operation in the error raised if the agent goes away ("an upload").
    """
    with one_error():
        async with conn.open_request(request) as answers, anyio.create_task_group() as tg:

            async def send() -> None:
                try:
                    async with contextlib.aclosing(chunks()) as stream:
                        await conn.send_chunks(request.id, stream)
                except TransportError:
                    # A broken link ends the replies too, with the link's own reason: let the
                    # reader report it (it cancels this task), unless it never notices.
                    with anyio.move_on_after(LINK_GRACE):
                        await conn.wait_closed()
                        await anyio.sleep_forever()
                    raise

            tg.start_soon(send)
            async for message in answers:
                if isinstance(message, Reply):
                    tg.cancel_scope.cancel()
                    return raise_for_reply(message, expect, request)
    raise TransportError(f"the agent went away during {what}")


@contextlib.contextmanager
def one_error() -> Iterator[None]:
    """One failure, raised alone: the sender and the reply reader may both see a dead agent."""
    try:
        yield
    except BaseExceptionGroup as group:
        errors = _leaves(group)
        if all(isinstance(error, RockError) for error in errors):
            raise errors[0] from errors[0].__cause__
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for error in group.exceptions:
        found.extend(_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])
    return found


__all__ = ["LINK_GRACE", "call_streamed", "one_error"]
