"""The parts of `_signals` that need no sandbox: reading marks, matching them, the script's
checks. The script itself, in real sandboxes, is tested by `tests/integration/
test_nonroot_agent.py`."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time

import anyio
import anyio.to_thread
import pytest

from rock_agent import _procs
from rock_agent._signals import SCRIPT, Signals, matches, parse_marks


def test_parse_marks_reads_each_file_once_and_ignores_noise() -> None:
    out = (
        b"/proc/12/environ:ROCK_CMD=abc-1\0"
        b"/proc/13/environ:ROCK_CMD=abc-2\0"
        b"/proc/12/environ:ROCK_CMD=later\0"  # a second match in one file: the first counts
        b"garbage\0/proc/x/environ:ROCK_CMD=no\0/proc/14/environ:PATH=/bin\0"
    )
    assert parse_marks(out) == {12: b"abc-1", 13: b"abc-2"}
    assert parse_marks(b"") == {}


def test_matches_is_exact_unless_prefix() -> None:
    assert matches(b"abc-1", b"abc-1", prefix=False)
    assert not matches(b"abc-12", b"abc-1", prefix=False)
    assert matches(b"abc-12", b"abc-", prefix=True)
    assert not matches(None, b"abc-", prefix=True)


def test_value_of_takes_the_whole_name() -> None:
    env = b"ROCK_CMDX=no\0ROCK_CMD=yes\0"
    assert _procs.value_of(env, _procs.MARK) == b"yes"
    assert _procs.value_of(b"A=1", _procs.MARK) is None


def _script(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["/bin/sh", "-c", SCRIPT, "rock-signals", *args], capture_output=True, timeout=60
    )


def test_the_script_checks_start_times_and_never_signals_init_or_itself() -> None:
    child = subprocess.Popen(["sleep", "300"])
    try:
        start = _procs.start_time(child.pid)
        assert start is not None
        # A wrong start time (a pid reused) and pid 1, 0 or garbage: nothing is signalled.
        out = _script("kill", "TERM", "0", f"{child.pid}:{start + 1}", "1:1", "0:0", "x:y")
        assert out.stdout == b"" and child.poll() is None
        out = _script("kill", "TERM", "0", f"{child.pid}:{start}")
        assert out.stdout.split() == [str(child.pid).encode()]
        assert child.wait(30) == -15
    finally:
        child.kill()
        child.wait()


def _wait_for(parent: int, cmdline: bytes) -> int:
    """The descendant of `parent` running `cmdline` (NUL-separated), once it runs."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid in _procs.descendants(parent):
            with contextlib.suppress(OSError):
                if open(f"/proc/{pid}/cmdline", "rb").read() == cmdline:
                    return pid
        time.sleep(0.02)
    raise AssertionError(f"no {cmdline!r} under {parent}")


def test_the_script_signals_a_tree_but_not_what_started_before_since() -> None:
    parent = subprocess.Popen(["sh", "-c", "sleep 301 & sleep 0.5; sleep 302 & wait"])
    try:
        first, second = (
            _wait_for(parent.pid, b"sleep\x00301\x00"),
            _wait_for(parent.pid, b"sleep\x00302\x00"),
        )
        since = _procs.start_time(second)
        start = _procs.start_time(parent.pid)
        assert since is not None and start is not None
        out = _script("kill", "KILL", str(since), f"{parent.pid}:{start}:-")
        assert out.stdout.split() == [str(second).encode()]  # not the parent, not the first
        assert _procs.alive(first) and _procs.alive(parent.pid)
    finally:
        _procs.kill_tree(parent.pid)
        parent.wait()


@pytest.mark.anyio
async def test_signals_sends_from_the_host_when_allowed_and_never_runs_inside() -> None:
    calls: list[list[str]] = []

    async def run_inside(args: list[str]) -> bytes:
        calls.append(args)
        return b""

    child = subprocess.Popen(["sleep", "303"])  # noqa: ASYNC220 (a test's own child)
    try:
        signals = Signals(run_inside, os.getpid())
        await signals.send(9, [child.pid])
        assert (
            await anyio.to_thread.run_sync(child.wait, 30) == -9
            and calls == []
            and signals.inside_runs == 0
        )
        await signals.send(9, [0, -1, 1], tree=1, include_root=True)  # never sent, no error
    finally:
        child.kill()
        child.wait()
