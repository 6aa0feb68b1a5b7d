"""A request's inbox (`_inbox.Inbox`): order, waiting, closing, on both backends."""

from __future__ import annotations

import anyio
import pytest

from rock_core._inbox import Inbox
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio


async def test_messages_come_out_in_order() -> None:
    inbox: Inbox[int] = Inbox()
    for n in range(3):
        inbox.put(n)
    assert [await inbox.get() for _ in range(3)] == [0, 1, 2]


async def test_get_waits_for_a_put() -> None:
    inbox: Inbox[str] = Inbox()
    got: list[str | None] = []
    async with anyio.create_task_group() as tg:

        async def take() -> None:
            got.append(await inbox.get())

        tg.start_soon(take)
        await anyio.sleep(1)
        assert got == []
        inbox.put("reply")
    assert got == ["reply"]


async def test_close_ends_a_waiting_get_after_what_is_left() -> None:
    inbox: Inbox[str] = Inbox()
    inbox.put("event")
    inbox.close()
    assert await inbox.get() == "event"
    assert await inbox.get() is None
    inbox.put("late")  # dropped: the request's caller has left
    assert await inbox.get() is None


async def test_close_wakes_a_waiting_get() -> None:
    inbox: Inbox[str] = Inbox()
    got: list[str | None] = ["unset"]
    async with anyio.create_task_group() as tg:

        async def take() -> None:
            got[0] = await inbox.get()

        tg.start_soon(take)
        await anyio.sleep(1)
        inbox.close()
    assert got == [None]


async def test_a_cancelled_get_leaves_the_inbox_usable() -> None:
    inbox: Inbox[str] = Inbox()
    with anyio.move_on_after(1):
        await inbox.get()
    inbox.put("next")
    assert await inbox.get() == "next"
