"""`rock cp` and `rock images warm` progress bars: drawn on stderr under a real terminal (a
pseudo-terminal), never with `--quiet` or in a pipe, where the output stays exact bytes."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import SH_IMAGE
from .test_cli import held_sandboxes, rock_bytes

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Bytes: well over the size that gets a bar, and enough for a download to last several of the
# callback's intervals (0.1 s) at a few hundred MB/s: a copy done within one shows no bar.
SIZE = 128 << 20
BAR = "━".encode()  # what rich's bar is drawn with


@pytest.fixture(scope="module")
def held(docker_engine: None) -> Iterator[str]:
    with held_sandboxes(1) as (sandbox,):
        yield sandbox


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("progress") / "big"
    path.write_bytes(os.urandom(SIZE))
    return path


def rock_on_a_terminal(*args: str) -> tuple[int, bytes, bytes]:
    """Run `rock args` with stderr on a pseudo-terminal, stdout a pipe: (code, stdout, what
    the terminal got)."""
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "rock_sdk._cli", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
        )
    finally:
        os.close(slave)
    terminal = bytearray()
    try:
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the last holder of the terminal's other end has gone
                break
            if not data:
                break
            terminal += data
    finally:
        os.close(master)
    assert process.stdout is not None
    out = process.stdout.read()
    process.stdout.close()
    return process.wait(timeout=180), out, bytes(terminal)


def test_cp_draws_a_bar_both_ways_on_a_terminal(held: str, big: Path, tmp_path: Path) -> None:
    code, out, terminal = rock_on_a_terminal("cp", str(big), f"{held}:/tmp/big")
    assert (code, out) == (0, b"")
    assert b"upload" in terminal and BAR in terminal and b"eta" in terminal
    assert f"{SIZE / 1e6:.1f}/{SIZE / 1e6:.1f} MB".encode() in terminal, "the bar ends full"
    assert b"copied file /tmp/big (" in terminal

    code, out, terminal = rock_on_a_terminal("cp", f"{held}:/tmp/big", str(tmp_path / "back"))
    assert (code, out) == (0, b"")
    assert b"download" in terminal and BAR in terminal
    assert (tmp_path / "back").read_bytes() == big.read_bytes()


def test_cp_is_quiet_with_quiet_and_for_small_files(held: str, tmp_path: Path, big: Path) -> None:
    code, out, terminal = rock_on_a_terminal("cp", "--quiet", str(big), f"{held}:/tmp/big2")
    assert (code, out) == (0, b"")
    assert BAR not in terminal and terminal.startswith(b"copied file /tmp/big2 (")
    small = tmp_path / "small"
    small.write_bytes(b"x" * 1000)
    code, out, terminal = rock_on_a_terminal("cp", str(small), f"{held}:/tmp/small")
    assert (code, out) == (0, b"")
    assert BAR not in terminal and terminal.startswith(b"copied file /tmp/small (")


def test_cp_in_a_pipe_prints_no_bar(held: str, big: Path) -> None:
    done = rock_bytes("cp", str(big), f"{held}:/tmp/big3")
    assert (done.returncode, done.stdout) == (0, b"")
    assert done.stderr.startswith(b"copied file /tmp/big3 (") and done.stderr.count(b"\n") == 1
    assert b"\x1b" not in done.stderr and b"\r" not in done.stderr


def test_cp_error_under_a_terminal_is_said_once(held: str, tmp_path: Path) -> None:
    code, out, terminal = rock_on_a_terminal("cp", f"{held}:/no/such", str(tmp_path))
    assert (code, out) == (125, b"")
    assert terminal.count(b"rock cp: /no/such: no such file or folder in sandbox ") == 1


def test_images_warm_draws_a_bar_on_a_terminal_and_none_in_a_pipe() -> None:
    code, out, terminal = rock_on_a_terminal("images", "warm", SH_IMAGE)
    assert code == 0 and out.count(b"\n") == 1
    assert f": {SH_IMAGE} ready (".encode() in out
    assert b"warm" in terminal and BAR in terminal and b"1/1" in terminal

    piped = rock_bytes("images", "warm", SH_IMAGE)
    assert (piped.returncode, piped.stdout.count(b"\n"), piped.stderr) == (0, 1, b"")
    assert f": {SH_IMAGE} ready (".encode() in piped.stdout

    code, out, terminal = rock_on_a_terminal("images", "warm", "--quiet", SH_IMAGE)
    assert (code, terminal) == (0, b"")


def test_images_warm_error_under_a_terminal_is_said_once() -> None:
    missing = "rock-test/no-such-image:1"
    code, out, terminal = rock_on_a_terminal("images", "warm", missing)
    assert (code, out) == (125, b"")
    assert terminal.count(b"rock images warm: host ") == 1
    assert f"image '{missing}' is not on this host".encode() in terminal
