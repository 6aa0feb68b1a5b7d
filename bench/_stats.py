"""Small helpers shared by the benchmarks: percentiles, a table printer, peak RSS of a process."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) of `values`, linearly interpolated between ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    """The median of `values`."""
    return percentile(values, 50)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print `rows` under `headers` as an aligned text table, floats with 3 significant digits."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


async def compare_rates(
    title: str, sides: dict[str, Callable[[], Awaitable[float]]], count: int, rounds: int
) -> dict[str, float]:
    """Run each side `rounds` times, rotating who goes first; each returns the seconds it
    took for `count` items. Print median/min/max rates; return the median rate per side."""
    rates: dict[str, list[float]] = {k: [] for k in sides}
    names = list(sides)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            rates[name].append(count / await sides[name]())
    rows = [[k, median(v), min(v), max(v)] for k, v in rates.items()]
    print_table(title, ["side", "median", "min", "max"], rows)
    return {k: median(v) for k, v in rates.items()}


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _status_field(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmHWM, VmRSS), in KiB; 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def peak_rss_kib(pid: int) -> int:
    """Peak resident set size (VmHWM) of `pid`, in KiB."""
    return _status_field(pid, "VmHWM")


def rss_kib(pid: int) -> int:
    """Current resident set size (VmRSS) of `pid`, in KiB."""
    return _status_field(pid, "VmRSS")


def reset_peak_rss(pid: int) -> bool:
    """Reset `pid`'s VmHWM to its current RSS (writes 5 to /proc/PID/clear_refs); best effort."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child_pids(parent: int | None = None, *, cmdline_contains: str = "") -> list[int]:
    """Pids of the direct children of `parent` (default: this process) matching a cmdline."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and cmdline_contains in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def sha256(path: Path) -> str:
    """The sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time `pid` has used so far, in seconds; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
