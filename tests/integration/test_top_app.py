"""`rock top`'s Textual app driven by Textual's pilot against a real socket agent and real
Docker: rows appear, the sort key changes their order, the owner filter hides rows, and the
delete key (once confirmed) removes a real sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from textual.widgets import DataTable, Input

from rock_core import open_cluster
from rock_core._owner import local_owner
from rock_sdk import SandboxConfig
from rock_sdk import open_cluster as open_sdk_cluster
from rock_sdk._top import SORT_KEYS, sort_rows
from rock_sdk._top._app import TopApp
from rock_sdk._top._screens import Confirm, Help, OwnerFilter

from ..conftest import SH_IMAGE
from .test_leases import SocketAgent, running_agent

pytestmark = [pytest.mark.anyio, pytest.mark.docker, pytest.mark.slow]

CONFIG = SandboxConfig(image=SH_IMAGE, memory="64m", cpus=0.25)


def owner(team: str) -> str:
    """A local identity of this process ending in `team`: the sandboxes of a live local owner
    are never taken for leaks (by this or another test run on the engine)."""
    return f"{local_owner().rsplit(':', 1)[0]}:{team}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


@pytest.fixture
def agent(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[SocketAgent]:
    with running_agent(tmp_path_factory.mktemp("top-app"), "top-app") as agent:
        yield agent


def shown_ids(app: TopApp) -> list[str]:
    table = app.query_one("#sandboxes", DataTable)
    return [str(table.get_row_at(i)[1]) for i in range(table.row_count)]


async def test_rows_sort_filter_help_and_delete(agent: SocketAgent) -> None:
    async with (
        open_sdk_cluster([agent.address], owner=owner("team-a")) as team_a,
        open_sdk_cluster([agent.address], owner=owner("team-b")) as team_b,
        open_cluster([agent.address], admin=True) as admin,
    ):
        a_ids = [(await team_a.create_sandbox(CONFIG)).sandbox_id for _ in range(2)]
        b_box = await team_b.create_sandbox(CONFIG)
        app = TopApp(admin, interval=60)  # refreshed by the test, not the timer
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause()
            assert app.refreshes >= 1
            assert sorted(shown_ids(app)) == sorted([*a_ids, b_box.sandbox_id])
            hosts = app.query_one("#hosts", DataTable)
            assert hosts.row_count == 1 and hosts.get_row_at(0)[0] == agent.host_id

            # Sorting: each press moves to the next column, and the rows follow it.
            orders = {}
            for key in SORT_KEYS[1:]:
                await pilot.press("s")
                assert app.sort_key == key
                expected = sort_rows(app.snapshot.sandboxes, key)
                assert shown_ids(app) == [row.sandbox_id for row in expected]
                orders[key] = shown_ids(app)
            assert len({tuple(order) for order in orders.values()}) > 1
            by_owner = orders["owner"]
            assert by_owner[-1] == b_box.sandbox_id  # "team-b" after "team-a"

            # Help opens, and any key closes it.
            await pilot.press("question_mark")
            assert isinstance(app.screen, Help)
            await pilot.press("space")
            assert not isinstance(app.screen, Help)

            # The owner filter hides the other owner's rows.
            await pilot.press("o")
            assert isinstance(app.screen, OwnerFilter)
            app.screen.query_one(Input).value = "team-b"
            await pilot.press("enter")
            assert shown_ids(app) == [b_box.sandbox_id]

            # Delete asks first: "n" keeps the sandbox, "y" removes it.
            await pilot.press("d")
            assert isinstance(app.screen, Confirm)
            assert b_box.sandbox_id in app.screen.question
            await pilot.press("n")
            await app.workers.wait_for_complete()
            assert shown_ids(app) == [b_box.sandbox_id]
            await pilot.press("d")
            await pilot.press("y")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert shown_ids(app) == []
            assert app.message == f"delete: {b_box.sandbox_id} done"
            assert len(agent.containers()) == 2  # really removed: team-a's two are left

            # Clearing the filter shows the rest again.
            await pilot.press("o")
            app.screen.query_one(Input).value = ""
            await pilot.press("enter")
            assert sorted(shown_ids(app)) == sorted(a_ids)
            await pilot.press("q")
