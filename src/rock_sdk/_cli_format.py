"""How the `rock` commands show things to people: tables, sizes, durations and times.

Rules:
- Every table goes through `print_table`: columns two spaces apart, each as wide as its widest
  cell, no trailing spaces.
- One duration formatter, `duration`: seconds under 2 minutes, minutes under 2 hours, hours
  beyond. ``compact`` is for table cells (``45s``, ``3m``, ``2h``: whole units); otherwise
  it is for sentences (``2.5 s``, ``3 min``, ``1.5 h``: three significant digits).
- Sizes are in binary units (`size_text`); times are local (`timestamp`), "-" when unknown.
- Nothing here imports another CLI module, so every command module can use it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Print `rows` (the first one is the header) as aligned columns."""
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


def timestamp(stamp: float, *, seconds: bool = False) -> str:
    """A unix time as local date and time (to the minute, or to the second); "-" if unset."""
    if stamp <= 0:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else ""), time.localtime(stamp))
