"""The shell text and decisions behind ROCK's nohup runs and line-range reads, with no I/O.

Rules:
- Plain functions of their arguments: the `Sandbox` (`_rock_sandbox`) runs what they build
  and passes back what it saw. Nothing here awaits, sleeps or reads a clock.
- A nohup run starts the command in the background of a session, with stdin from /dev/null
  and stdout and stderr to one file, and prints its pid between markers; the wait polls that
  pid inside the sandbox (so a short command returns at once), and the result is the file's
  content, as ROCK returns it. Its exit code says whether the command finished in time, not
  how it exited (ROCK's meaning).
"""

from __future__ import annotations

import posixpath
import re
import shlex

from rock_sdk import BadRequest

PID_START = "PIDSTART"
PID_END = "PIDEND"
_PID = re.compile(f"{PID_START}([0-9]+){PID_END}")

MAX_POLL_INTERVAL = 0.5
"""Seconds between two looks at a background process (at most; `wait_interval` if smaller)."""


def check_wait(wait_timeout: object, wait_interval: object) -> tuple[float, float]:
    """`wait_timeout` and `wait_interval` as positive seconds, or `BadRequest`."""
    values = []
    for name, value in (("wait_timeout", wait_timeout), ("wait_interval", wait_interval)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise BadRequest(f"arun: {name} must be a positive number of seconds, got {value!r}")
        values.append(float(value))
    return values[0], values[1]


def output_file_for(output_file: str | None, stamp: int) -> tuple[str, str]:
    """(file, folder to create or "") for a run's output; `BadRequest` for a bad name.

    Like ROCK, an `output_file` must name a file with an extension ("out.txt", "logs/a.log").
    """
    if not output_file:
        return f"/tmp/tmp_{stamp}.out", ""
    folder, name = posixpath.split(output_file)
    if "." not in name:
        raise BadRequest(
            f"output_file {output_file!r} must name a file with an extension, such as run.log"
        )
    return output_file, folder or "."


def start_line(cmd: str, output_file: str) -> str:
    """The session line that starts `cmd` in the background and prints its pid."""
    out = shlex.quote(output_file)
    # An image without `nohup` (busybox may lack it) runs the command plainly. `disown` keeps
    # bash from waiting for it; sh has no `disown`, and needs none.
    return (
        "_rock_nohup=nohup; command -v nohup >/dev/null 2>&1 || _rock_nohup=;"
        f" $_rock_nohup {cmd} < /dev/null > {out} 2>&1 & echo {PID_START}${{!}}{PID_END};"
        " unset _rock_nohup; disown 2>/dev/null || true"
    )


def parse_pid(output: str) -> int | None:
    """The pid `start_line` printed, or None."""
    match = _PID.search(output)
    return int(match.group(1)) if match else None


def wait_line(pid: int, wait_interval: float) -> str:
    """A session line that returns once process `pid` is gone."""
    interval = max(min(wait_interval, MAX_POLL_INTERVAL), 0.05)
    return f"while kill -0 {pid} 2>/dev/null; do sleep {interval:g}; done"


def wait_outcome(pid: int, finished: bool, elapsed: float, wait_timeout: float) -> str:
    """How the wait for `pid` ended, in words (ROCK's `failure_reason` when it did not)."""
    if finished:
        return f"process {pid} completed in {elapsed:.1f}s"
    return f"process {pid} did not complete within {wait_timeout:g}s (it goes on running)"


def read_line(output_file: str, limit: int | None) -> str:
    """The session line that prints a run's output (its first `limit` bytes if given)."""
    out = shlex.quote(output_file)
    if limit:
        return f"head -c {int(limit)} {out}"
    return f"cat {out}"


def size_line(output_file: str) -> str:
    """The session line that prints the output file's size in bytes."""
    return f"wc -c < {shlex.quote(output_file)}"


def detached_report(output_file: str, finished: bool, outcome: str, size: int | None) -> str:
    """The output of a run with `ignore_output`: where its output is, instead of the output.

    The "Output file:" and "File size:" lines are what ROCK's callers look for.
    """
    lines = [
        "The command ran in the background; its output was left in a file.",
        f"Status: {'completed' if finished else 'not completed'} ({outcome})",
        f"Output file: {output_file}",
    ]
    if size is not None:
        lines.append(f"File size: {_size(size)}")
    lines.append(f"Read it with Sandbox.read_file(...) or 'cat {output_file}' in a session.")
    return "\n".join(lines)


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1 << 20:
        return f"{size / 1024:.2f} KB"
    return f"{size / (1 << 20):.2f} MB"


def line_ranges(
    start_line: int | None, end_line: int | None, lines_per_request: int
) -> tuple[int, int | None]:
    """(first, last or None) checked: lines count from 1, `end_line` not before the first,
    1..10000 lines per request; `BadRequest` otherwise."""
    first = 1 if start_line is None else start_line
    for name, value in (("start_line", first), ("lines_per_request", lines_per_request)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"read_file_by_line_range: {name} must be an int, got {value!r}")
    if first < 1:
        raise BadRequest(f"read_file_by_line_range: start_line must be 1 or more, got {first}")
    if end_line is not None and (
        isinstance(end_line, bool) or not isinstance(end_line, int) or end_line < first
    ):
        raise BadRequest(
            f"read_file_by_line_range: end_line must be an int not before start_line ({first}),"
            f" got {end_line!r}"
        )
    if not 1 <= lines_per_request <= 10000:
        raise BadRequest(
            "read_file_by_line_range: lines_per_request must be between 1 and 10000,"
            f" got {lines_per_request}"
        )
    return first, end_line


def chunks(first: int, last: int, per_request: int) -> list[tuple[int, int]]:
    """The line ranges (inclusive) that cover `first`..`last`, `per_request` lines each."""
    return [(a, min(a + per_request - 1, last)) for a in range(first, last + 1, per_request)]
