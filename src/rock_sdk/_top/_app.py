"""`rock top`'s Textual app: the live view of a cluster's hosts, sandboxes and pools.

Rules:
- The app only shows and asks: the rows come from `_collect.collect` (one round trip per host
  per refresh, every `interval` seconds, never two at once), and stop and delete are
  `_collect`'s too, run as workers after a confirmation, followed by a refresh.
- It runs on the event loop of the cluster it is given (`App.run_async`), so a program can
  show the view of its own cluster; it never opens or closes the cluster.
- A refresh that fails says why in the status line and the view keeps its last rows.
- The selection follows its sandbox across refreshes and re-sorts, by id.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

import anyio
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Static

from rock_core import Cluster, RockError

from .._cli_format import Column
from ._collect import collect, delete_sandbox, stop_sandbox
from ._columns import HOST_COLUMNS, POOL_COLUMNS, SANDBOX_COLUMNS, SORT_HEADERS
from ._rows import SORT_KEYS, SandboxRow, Snapshot, by_owner, sort_rows
from ._screens import Confirm, Help, OwnerFilter

_Act = Callable[[Cluster, str, str], Awaitable[None]]  # stop or delete one sandbox of a host


class TopApp(App[None]):
    """The live view of `cluster`, refreshed every `interval` seconds."""

    TITLE = "rock top"
    CSS = """
    DataTable { height: auto; max-height: 50%; margin-bottom: 1; }
    #sandboxes { max-height: 1fr; }
    .caption { text-style: bold; color: $accent; }
    #status { dock: bottom; height: 1; margin-bottom: 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sort", "sort"),
        Binding("o", "filter", "owner"),
        Binding("slash", "filter", "owner", show=False),
        Binding("x", "stop", "stop"),
        Binding("d", "delete", "delete"),
        Binding("r", "refresh_view", "refresh"),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, cluster: Cluster, *, interval: float = 2.0, stats: bool = True) -> None:
        super().__init__()
        self.cluster = cluster
        self.interval = interval
        self.stats = stats
        self.snapshot = Snapshot(hosts=[], sandboxes=[], pools=[])
        self.sort_key = "host"
        self.owner_filter = ""
        self.message = ""  # the latest action's outcome, or why a refresh failed
        self.refreshed = ""
        self.refreshes = 0  # completed refreshes, for whoever waits on one
        self._shown: list[SandboxRow] = []
        self._reading = anyio.Lock()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Hosts", classes="caption")
        yield DataTable(id="hosts", cursor_type="none", zebra_stripes=True)
        yield Static("Sandboxes", classes="caption", id="sandboxes-caption")
        yield DataTable(id="sandboxes", cursor_type="row", zebra_stripes=True)
        yield Static("Pools", classes="caption")
        yield DataTable(id="pools", cursor_type="none", zebra_stripes=True)
        yield Static("", id="status")
        yield Footer()

    async def on_mount(self) -> None:
        """Columns, the first refresh, and the timer of the next ones."""
        for table_id, columns in (
            ("hosts", HOST_COLUMNS),
            ("sandboxes", SANDBOX_COLUMNS),
            ("pools", POOL_COLUMNS),
        ):
            self._table(table_id).add_columns(*(c.header for c in columns))
        self.query_one("#sandboxes", DataTable).focus()
        self.set_interval(self.interval, self._tick)
        await self.action_refresh_view()

    # ------------------------------------------------------------------ refresh and show

    async def _tick(self) -> None:
        if not self._reading.locked():  # a slow refresh is never doubled by the timer
            await self.action_refresh_view()

    async def action_refresh_view(self) -> None:
        """Read the view from the agents now (after any refresh under way) and show it."""
        async with self._reading:
            try:
                self.snapshot = await collect(self.cluster, stats=self.stats)
                self.refreshed = f"refreshed at {time.strftime('%H:%M:%S')}"
                if self.message.startswith("refresh failed"):
                    self.message = ""  # the agents answer again
            except RockError as exc:
                self.message = f"refresh failed: {exc}"
            self.refreshes += 1
        self.show()

    def show(self) -> None:
        """Fill the tables from the latest snapshot, with the sort and filter in force."""
        snap = self.snapshot
        _fill(self._table("hosts"), HOST_COLUMNS, snap.hosts)
        _fill(self._table("pools"), POOL_COLUMNS, snap.pools)
        table = self._table("sandboxes")
        selected = self.selected()
        rows = sort_rows(by_owner(snap.sandboxes, self.owner_filter), self.sort_key)
        self._shown = rows
        _fill(table, SANDBOX_COLUMNS, rows)
        ids = [row.sandbox_id for row in rows]
        if selected is not None and selected.sandbox_id in ids:
            table.move_cursor(row=ids.index(selected.sandbox_id))
        owner = f", owner contains {self.owner_filter!r}" if self.owner_filter else ""
        caption = f"Sandboxes ({len(rows)} of {len(snap.sandboxes)}; sorted by "
        self.query_one("#sandboxes-caption", Static).update(
            f"{caption}{SORT_HEADERS[self.sort_key]}{owner})"
        )
        status = " · ".join(text for text in (self.refreshed, self.message) if text)
        self.query_one("#status", Static).update(status)

    def selected(self) -> SandboxRow | None:
        """The sandbox under the cursor, if any."""
        table = self._table("sandboxes")
        index = table.cursor_row
        return self._shown[index] if 0 <= index < len(self._shown) and table.row_count else None

    def _table(self, table_id: str) -> DataTable[str]:
        return self.query_one(f"#{table_id}", DataTable)

    # ------------------------------------------------------------------ keys

    def action_sort(self) -> None:
        """Sort the sandboxes by the next column."""
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        self.show()

    def action_filter(self) -> None:
        """Ask for the owner filter."""

        def chosen(text: str | None) -> None:
            if text is not None:
                self.owner_filter = text
                self.show()

        self.push_screen(OwnerFilter(self.owner_filter), chosen)

    def action_help(self) -> None:
        """Show the keys."""
        self.push_screen(Help())

    def action_stop(self) -> None:
        """Stop the selected sandbox, once confirmed."""
        self._confirm_then("stop", stop_sandbox)

    def action_delete(self) -> None:
        """Delete the selected sandbox, once confirmed."""
        self._confirm_then("delete", delete_sandbox)

    def _confirm_then(self, verb: str, act: _Act) -> None:
        row = self.selected()
        if row is None:
            self.notify(f"no sandbox selected to {verb}", severity="warning")
            return

        async def perform() -> None:
            try:
                await act(self.cluster, row.host, row.sandbox_id)
                self.message = f"{verb}: {row.sandbox_id} done"
            except RockError as exc:
                self.message = f"{verb} {row.sandbox_id} failed: {exc}"
                self.notify(self.message, severity="error")
            await self.action_refresh_view()

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(perform(), group="act")

        question = f"{verb.capitalize()} sandbox {row.sandbox_id} on {row.host} ({row.owner})?"
        self.push_screen(Confirm(question), answered)


def _fill(table: DataTable[str], columns: list[Column[Any]], rows: Sequence[Any]) -> None:
    table.clear()
    for row in rows:
        table.add_row(*(column.cell(row) for column in columns))


__all__ = ["TopApp"]
