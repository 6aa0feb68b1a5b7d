"""`rock run` / `rock exec` stream stdin while the command runs: real processes, real pipes,
real Docker (the agent's side alone, on the fake runtime: tests/agent/test_exec_streamed.py)."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from typing import Any, cast

import anyio
import pytest

from rock_core import AgentConnection, BadRequest
from rock_core.protocol import Welcome
from rock_sdk._cli_base import Interrupts
from rock_sdk._cli_pipe import Piped, run_piped

from ..conftest import PY_IMAGE, SH_IMAGE
from .test_cli import rock

ROCK = [sys.executable, "-m", "rock_sdk._cli"]


def test_yes_into_head_ends_when_head_ends(docker_engine: None) -> None:
    pipeline = f"yes | {' '.join(ROCK)} run {SH_IMAGE} -- head -n 3"
    done = subprocess.run(["sh", "-c", pipeline], capture_output=True, timeout=180)
    assert (done.stdout, done.stderr, done.returncode) == (b"y\ny\ny\n", b"", 0)


def test_a_reader_that_leaves_ends_the_command(docker_engine: None) -> None:
    # As `docker run IMG yes | head -n 1`: the writer ends once its reader has gone.
    pipeline = f"set -o pipefail 2>/dev/null; {' '.join(ROCK)} run {SH_IMAGE} -- yes | head -n 1"
    done = subprocess.run(["bash", "-c", pipeline], capture_output=True, timeout=120)
    assert (done.stdout, done.stderr, done.returncode) == (b"y\n", b"", 141)


def test_each_line_reaches_the_command_before_the_next_is_written(docker_engine: None) -> None:
    process = subprocess.Popen(
        [*ROCK, "run", SH_IMAGE, "--", "cat; echo closed >&2; exit 4"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(b"a\n")
        process.stdin.flush()
        # `b` is not written yet: `a` must come back on its own.
        assert process.stdout.readline() == b"a\n"
        # Then `b` and end of file: `cat` ends.
        out, err = process.communicate(b"b\n", timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert (out, err, process.returncode) == (b"b\n", b"closed\n", 4)


@pytest.mark.slow
def test_twenty_megabytes_of_stdin_come_back_exact(docker_engine: None) -> None:
    data = bytes(range(256)) * (20 * 4096)  # 20 MiB, every byte value
    done = subprocess.run(
        [*ROCK, "run", PY_IMAGE, "--", "sha256sum; head -c 3 /dev/zero >&2"],
        input=data,
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    assert done.stderr == bytes(3)


def test_ctrl_c_with_stdin_open_exits_130_and_removes_the_sandbox(docker_engine: None) -> None:
    process = subprocess.Popen(
        [*ROCK, "run", SH_IMAGE, "--", "echo started; cat >/dev/null; echo never"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        assert process.stdout.readline() == b"started\n"
        rows = map(json.loads, rock("ps", "--json").stdout.splitlines())
        (mine,) = [r["sandbox_id"] for r in rows if str(process.pid) in r["owner"]]
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=120)  # our stdin is still open
    finally:
        if process.poll() is None:
            process.kill()
    assert (out, process.returncode) == (b"", 130)
    assert mine not in rock("ps", "-q").stdout.split()


def test_an_agent_that_cannot_stream_is_told_to_upgrade() -> None:
    welcome = Welcome(protocol=1, agent_version="0.0.1", host_id="old", cpus=1.0, memory=1 << 30)
    conn = AgentConnection(cast(Any, None), welcome, "old")
    piped = Piped(argv=["true"], where="rock exec")
    with pytest.raises(BadRequest) as caught:
        anyio.run(run_piped, conn, "sb-1", piped, Interrupts())
    assert str(caught.value) == (
        "the agent of host old (version 0.0.1) cannot stream a command's input and output "
        "(rock run, rock exec): upgrade rock-agent there"
    )
