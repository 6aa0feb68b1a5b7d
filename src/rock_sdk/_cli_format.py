"""How the `rock` commands show things to people and scripts: listings, sizes, durations, times.

Rules:
- A listing is a sequence of row objects (one `msgspec.Struct` type per listing) and the
  `Column`s that turn a row into cells. `show_rows` renders the same rows either as a table
  or, with ``--json``, as one JSON object per row and line (as ``docker ps --format json``);
  a single report (`rock status`, `rock env show`) is one indented JSON object (`show_json`).
- A table is drawn by rich only when stdout is a terminal; otherwise it is plain text
  (`plain_table`: columns two spaces apart, each as wide as its widest cell, no trailing
  spaces, no colour codes), so pipes and `awk` see stable columns.
- One duration formatter, `duration`: seconds under 2 minutes, minutes under 2 hours, hours
  beyond. ``compact`` is for table cells (``45s``, ``3m``, ``2h``: whole units); otherwise
  it is for sentences (``2.5 s``, ``3 min``, ``1.5 h``: three significant digits). One
  duration parser, `parse_duration` (``30``, ``1.5s``, ``5m``, ``2h``).
- Sizes are in binary units (`size_text`) and parsed by the SDK's one parser (`parse_size`);
  times are local (`timestamp`), "-" when unknown.
- Nothing here imports another CLI module, so every command module can use it.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from rock_core import BadRequest

from ._config import parse_size

__all__ = [
    "Column",
    "duration",
    "parse_duration",
    "parse_size",
    "plain_table",
    "show_json",
    "show_rows",
    "size_text",
    "stdout_is_terminal",
    "timestamp",
]

Row = TypeVar("Row")


@dataclass(frozen=True)
class Column(Generic[Row]):
    """A table column: its header and the cell it shows for a row."""

    header: str
    cell: Callable[[Row], str]


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal (then tables are drawn by rich)."""
    return sys.stdout.isatty()


def show_rows(rows: Sequence[Row], columns: Sequence[Column[Row]], *, json: bool = False) -> None:
    """Print `rows` as a table of `columns`, or with `json` one JSON object per row and line."""
    if json:
        for row in rows:
            sys.stdout.write(msgspec.json.encode(row).decode() + "\n")
        sys.stdout.flush()
        return
    cells = [[column.cell(row) for column in columns] for row in rows]
    headers = [column.header for column in columns]
    if stdout_is_terminal():
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for header in headers:
            table.add_column(header, overflow="fold")
        for line in cells:
            table.add_row(*line)
        Console(highlight=False).print(table)
        return
    plain_table([headers, *cells])


def show_json(value: Any) -> None:
    """Print one report (a struct or plain data) as indented JSON."""
    encoded = msgspec.json.encode(value)
    print(msgspec.json.format(encoded, indent=2).decode())


def plain_table(rows: Sequence[Sequence[str]]) -> None:
    """Print `rows` (the first one is the header) as aligned plain-text columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def size_text(size: int) -> str:
    """A byte count for people: 512B, 1.9MiB, 241.1MiB, 3.0GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float, *, compact: bool = False) -> str:
    """`seconds` for people, in seconds, minutes or hours (see the module's rules)."""
    if seconds < 120:
        value, short, long = seconds, "s", "s"
    elif seconds < 7200:
        value, short, long = seconds / 60, "m", "min"
    else:
        value, short, long = seconds / 3600, "h", "h"
    return f"{value:.0f}{short}" if compact else f"{value:.3g} {long}"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*$")
_SECONDS_PER = {None: 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str, what: str = "--timeout") -> float:
    """Seconds from ``"30"``, ``"1.5s"``, ``"5m"`` or ``"2h"``; `BadRequest` naming `what`."""
    match = _DURATION.match(text)
    seconds = float(match.group(1)) * _SECONDS_PER[match.group(2)] if match else 0.0
    if seconds <= 0:
        raise BadRequest(f"{what} {text!r} is not a duration such as '30', '30s', '5m' or '2h'")
    return seconds


def timestamp(stamp: float, *, seconds: bool = False) -> str:
    """A unix time as local date and time (to the minute, or to the second); "-" if unset."""
    if stamp <= 0:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else ""), time.localtime(stamp))
