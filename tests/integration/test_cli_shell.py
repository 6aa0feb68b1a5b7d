"""`rock shell ID` as a user runs it: the real command under a real pseudo-terminal (this test
holds its master, as a terminal emulator does), on bash (python:3.11) and on busybox sh."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator

import pytest

from ..conftest import PY_IMAGE, SH_IMAGE
from .test_cli import cli, held_sandboxes, rock_bytes

pytestmark = [pytest.mark.docker, pytest.mark.slow]

STEP = 60.0  # seconds one step may take (a limit that fails the test, never a measure)
PROMPT = b"<p> "  # the prompt the test sets (the echo of the command setting it differs)


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pty is rock's controlling terminal


class PtyRock:
    """`rock shell ARGS` on a new pseudo-terminal of `rows` x `cols`."""

    def __init__(self, *args: str, rows: int, cols: int) -> None:
        self.master, self.slave = os.openpty()
        self.set_size(rows, cols)
        self.cooked = termios.tcgetattr(self.slave)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rock_sdk._cli", "shell", *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
        self.seen = b""

    def set_size(self, rows: int, cols: int) -> None:
        """Resize the terminal (the kernel sends its foreground job SIGWINCH)."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def until(self, wanted: bytes) -> bytes:
        """The output from here up to and including `wanted`."""
        start = len(self.seen)
        deadline = time.monotonic() + STEP
        while wanted not in self.seen[start:]:
            left = deadline - time.monotonic()
            assert left > 0, f"never showed {wanted!r}: {self.seen[start:]!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                self.seen += os.read(self.master, 65536)
        end = self.seen.index(wanted, start) + len(wanted)
        shown, self.seen = self.seen[start:end], self.seen[:start] + self.seen[end:]
        return shown

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STEP)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture(scope="module", params=[PY_IMAGE, SH_IMAGE])
def held(request: pytest.FixtureRequest, docker_engine: None) -> Iterator[str]:
    with held_sandboxes(1, request.param) as ids:
        yield ids[0]


@pytest.fixture
def terminal(held: str) -> Iterator[PtyRock]:
    rock = PtyRock(held, rows=30, cols=100)
    try:
        yield rock
    finally:
        rock.close()


def test_a_shell_on_a_real_terminal_follows_its_size_and_exits_with_its_code(
    terminal: PtyRock,
) -> None:
    terminal.type(b"PS1='<'p'> '; tty; stty size; echo at-$((1 + 1))\r")
    shown = terminal.until(b"at-2")
    assert b"/dev/pts/" in shown and b"30 100" in shown
    assert not termios.tcgetattr(terminal.slave)[3] & termios.ICANON  # raw here
    terminal.set_size(40, 120)  # SIGWINCH: rock resizes the sandbox's terminal
    for attempt in range(50):  # until the resize, sent as its own request, has arrived
        terminal.type(b"stty size; echo try-%d-$((%d + 1))\r" % (attempt, attempt))
        if b"40 120" in terminal.until(b"try-%d-%d" % (attempt, attempt + 1)):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the sandbox's terminal never took the new size")
    terminal.type(b"exit 3\r")
    assert terminal.process.wait(timeout=STEP) == 3
    assert termios.tcgetattr(terminal.slave) == terminal.cooked  # restored


def test_ctrl_c_reaches_the_foreground_command_not_rock(terminal: PtyRock) -> None:
    terminal.type(b"PS1='<'p'> '\r")
    terminal.until(PROMPT)
    terminal.type(b"sh -c 'echo fg-$((6 * 7)); exec cat'\r")
    terminal.until(b"fg-42")
    terminal.type(b"\x03")
    terminal.until(PROMPT)  # cat was interrupted; the shell and rock go on
    assert terminal.process.poll() is None
    terminal.type(b"echo alive-$((4 + 1)); exit 0\r")
    terminal.until(b"alive-5")
    assert terminal.process.wait(timeout=STEP) == 0
    assert termios.tcgetattr(terminal.slave) == terminal.cooked


def test_a_command_instead_of_the_shell(held: str) -> None:
    rock = PtyRock("--cmd", "stty size; exit 7", "-e", "A=1", held, rows=12, cols=34)
    try:
        assert b"12 34" in rock.until(b"12 34")
        assert rock.process.wait(timeout=STEP) == 7
    finally:
        rock.close()


def test_piped_stdin_is_typed_and_its_end_is_ctrl_d(held: str) -> None:
    done = rock_bytes("shell", held, stdin=b"echo hi-$((1 + 2)); exit 4\n")
    assert done.returncode == 4 and b"hi-3" in done.stdout and done.stderr == b""
    done = rock_bytes("shell", "--cmd", "cat", "-w", "/tmp", held, stdin=b"no newline")
    assert (done.returncode, done.stdout.count(b"no newline")) == (0, 2)  # echo, then cat


def test_errors_are_said_once_and_exit_125(held: str) -> None:
    assert cli("shell", "sb-nope") == (125, b"", b"rock shell: no sandbox 'sb-nope' on any host\n")
    assert cli("shell", "-e", "NOEQUALS", held) == (
        125,
        b"",
        b"rock shell: -e wants KEY=VALUE, got 'NOEQUALS'\n",
    )
    code, out, err = cli("shell", "--cmd", "true", "-w", "relative", held)
    assert (code, out) == (125, b"")
    assert err.startswith(b"rock shell: ") and b"cwd" in err
