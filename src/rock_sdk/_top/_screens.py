"""The live view's dialogs: a yes/no confirmation, the owner filter and the help.

Rules:
- Each is a modal screen that answers through `dismiss` (Textual's screen results); none of
  them does any I/O: the app acts on the answer.
- Escape always leaves a dialog without acting.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

_DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: auto; max-width: 90%; height: auto; padding: 1 2;
    border: thick $accent; background: $surface;
}}
"""


class Confirm(ModalScreen[bool]):
    """Ask a yes/no question: ``y`` answers True, ``n`` or escape False."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="Confirm")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "yes"),
        Binding("n", "answer(False)", "no"),
        Binding("escape", "answer(False)", "no", show=False),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield Label("[b]y[/b] yes    [b]n[/b] no")

    def action_answer(self, yes: bool) -> None:
        """Close with the answer."""
        self.dismiss(yes)


class OwnerFilter(ModalScreen[str | None]):
    """Ask for the text an owner must contain (empty: every owner); escape keeps the old one."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="OwnerFilter")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel", show=False)]

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Show the sandboxes of owners containing (empty: all):")
            yield Input(value=self.current, placeholder="owner", id="owner")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter: filter by what was typed."""
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        """Escape: keep the filter as it was."""
        self.dismiss(None)


HELP = """\
[b]rock top[/b]: hosts, sandboxes and warm pools, refreshed from the agents.

  [b]s[/b]        sort the sandboxes by the next column (again: the one after)
  [b]o[/b] or [b]/[/b]   filter the sandboxes by owner
  [b]x[/b]        stop the selected sandbox (asks first)
  [b]d[/b]        delete the selected sandbox (asks first)
  [b]r[/b]        refresh now
  [b]?[/b]        this help
  [b]q[/b]        quit

Hosts: LINK is the link's state; CPUS and MEMORY what running sandboxes reserve of the host;
STARTING the creates the agent is carrying out; QUEUED the creates waiting in the queues of
the programs using the host. EXPIRES is the time to a sandbox's nearest deadline (idle,
lifetime or delete). Pools are each program's warm pools, as that program last reported.

Any key closes this help."""


class Help(ModalScreen[None]):
    """The keys and what the columns mean; any key closes it."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="Help")

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(HELP)

    def on_key(self) -> None:
        """Any key: back to the view."""
        self.dismiss(None)


__all__ = ["HELP", "Confirm", "Help", "OwnerFilter"]
