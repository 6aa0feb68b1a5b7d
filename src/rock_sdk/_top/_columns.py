"""The live view's columns: one list per kind of row, shared by the Textual app and the
one-shot tables (`rock top --once`), so both show the same cells.

Rules:
- A cell is text made by the CLI's one set of formatters (`_cli_format`: sizes, durations);
  an unknown value is "-".
- `SORT_HEADERS` names, for each sort key of `_rows.SORT_KEYS`, the header it sorts by.
"""

from __future__ import annotations

from .._cli_format import Column, duration, size_text
from ._rows import HostRow, PoolRow, SandboxRow


def _cpus(value: float) -> str:
    return f"{value:.4g}"


def _percent(row: SandboxRow) -> str:
    return "-" if row.cpu_percent is None else f"{row.cpu_percent:.1f}%"


def _memory(row: SandboxRow) -> str:
    if row.memory is None:
        return "-"
    limit = f"/{size_text(row.memory_limit)}" if row.memory_limit else ""
    return size_text(row.memory) + limit


def _expires(row: SandboxRow) -> str:
    if row.expires_in is None:
        return "-"
    return f"{row.expiry} {duration(row.expires_in, compact=True)}"


HOST_COLUMNS: list[Column[HostRow]] = [
    Column("HOST", lambda r: r.host),
    Column("LINK", lambda r: r.link),
    Column("CPUS", lambda r: f"{_cpus(r.cpus_used)}/{_cpus(r.cpus)}"),
    Column("MEMORY", lambda r: f"{size_text(r.memory_used)}/{size_text(r.memory)}"),
    Column("STARTING", lambda r: str(r.starting)),
    Column("QUEUED", lambda r: str(r.queued)),
    Column("SANDBOXES", lambda r: str(r.sandboxes)),
    Column("NOTE", lambda r: r.error),
]

SANDBOX_COLUMNS: list[Column[SandboxRow]] = [
    Column("HOST", lambda r: r.host),
    Column("ID", lambda r: r.sandbox_id),
    Column("STATE", lambda r: r.state),
    Column("OWNER", lambda r: r.owner),
    Column("AGE", lambda r: duration(r.age, compact=True)),
    Column("EXPIRES", _expires),
    Column("CPU", _percent),
    Column("MEMORY", _memory),
    Column("PIDS", lambda r: "-" if r.pids is None else str(r.pids)),
]

POOL_COLUMNS: list[Column[PoolRow]] = [
    Column("OWNER", lambda r: r.owner),
    Column("POOL", lambda r: r.name),
    Column("IMAGE", lambda r: r.image),
    Column("SIZE", lambda r: str(r.size)),
    Column("READY", lambda r: str(r.ready)),
    Column("TARGET", lambda r: str(r.target)),
    Column("OUT", lambda r: str(r.handed_out)),
    Column("HITS", lambda r: str(r.hits)),
    Column("MISSES", lambda r: str(r.misses)),
]

SORT_HEADERS = {
    "host": "HOST",
    "sandbox_id": "ID",
    "state": "STATE",
    "owner": "OWNER",
    "age": "AGE",
    "expires_in": "EXPIRES",
    "cpu": "CPU",
    "memory": "MEMORY",
}

__all__ = ["HOST_COLUMNS", "POOL_COLUMNS", "SANDBOX_COLUMNS", "SORT_HEADERS"]
