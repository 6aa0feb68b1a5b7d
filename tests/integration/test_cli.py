"""The `rock` and `rock-agent` command lines run as a user would: real processes, pipes,
exit codes, stdin, Ctrl-C. The helpers here (the CLI in-process, sandboxes held by another
program) serve the other `test_cli_*` modules too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from typer.testing import CliRunner

from rock_sdk._cli import main

from ..conftest import PY_IMAGE, SH_IMAGE

HOLDER = """
import sys, anyio
from rock_sdk import Sandbox, SandboxConfig

async def main(count):
    config = SandboxConfig(image=sys.argv[2], memory="64m")
    sandboxes = [Sandbox(config) for _ in range(count)]
    try:
        for sb in sandboxes:
            await sb.start()
            print(sb.sandbox_id, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the test closes our stdin
    finally:
        for sb in sandboxes:
            await sb.delete()

anyio.run(main, int(sys.argv[1]))
"""


def rock(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `rock args` as its own process (no stdin); text out."""
    return subprocess.run(
        [sys.executable, "-m", "rock_sdk._cli", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )


def rock_bytes(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run `rock args` as its own process with `stdin` piped in (none: /dev/null); bytes out."""
    return subprocess.run(
        [sys.executable, "-m", "rock_sdk._cli", *args],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        timeout=180,
    )


def cli(*args: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    """Run `rock args` in this process (typer's runner); (exit code, stdout, stderr)."""
    with CliRunner().isolation(input=stdin) as (out, err, _):
        code = main(list(args))
        sys.stdout.flush()
        sys.stderr.flush()
        return code, out.getvalue(), err.getvalue()


@contextmanager
def held_sandboxes(count: int, image: str = SH_IMAGE) -> Iterator[list[str]]:
    """`count` running sandboxes owned by another process; removed when the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(count), image],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        ids = [holder.stdout.readline().strip() for _ in range(count)]
        assert all(ids), "the holder could not start its sandboxes"
        yield ids
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)


def test_run_passes_stdout_stderr_and_exit_code_apart(docker_engine: None) -> None:
    code = "import sys; print('hi from', 6*7); print('oops', file=sys.stderr); raise SystemExit(3)"
    r = rock_bytes("run", PY_IMAGE, "--", "python3", "-c", code)
    assert (r.stdout, r.stderr, r.returncode) == (b"hi from 42\n", b"oops\n", 3)


def test_run_forwards_stdin_and_keeps_exact_bytes_past_a_mebibyte(docker_engine: None) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB, every byte value
    r = rock_bytes("run", SH_IMAGE, "--", "cat", stdin=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data
    assert r.stderr == b""


def test_run_with_env_and_workdir(docker_engine: None) -> None:
    r = rock("run", "-e", "WHO=rock", "-w", "/tmp", SH_IMAGE, "--", 'echo "$WHO in $(pwd)"')
    assert (r.stdout, r.returncode) == ("rock in /tmp\n", 0)


def test_run_timeout_exits_124(docker_engine: None) -> None:
    r = rock("run", "--timeout", "1", SH_IMAGE, "--", "echo a; sleep 30")
    assert r.stdout == "a\n"
    assert r.returncode == 124
    assert r.stderr == "rock run: the command timed out after 1 s\n"


def test_run_missing_image_exits_125(docker_engine: None) -> None:
    r = rock("run", "--pull", "never", "no-such/image:1", "--", "true")
    assert r.returncode == 125
    assert "rock run: image 'no-such/image:1' is not on this host" in r.stderr


def test_ctrl_c_interrupts_the_command_exits_130_and_removes_the_sandbox(
    docker_engine: None,
) -> None:
    command = [sys.executable, "-m", "rock_sdk._cli", "run", "--no-stdin", SH_IMAGE, "--"]
    process = subprocess.Popen(
        [*command, "echo started; sleep 300; echo never"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"started\n"
    listed = rock("ps", "--json")
    (mine,) = [
        row["sandbox_id"]
        for row in map(json.loads, listed.stdout.splitlines())
        if row["spec"] and row["spec"]["image"] == SH_IMAGE and row["state"] == "running"
        and str(process.pid) in row["owner"]
    ]  # fmt: skip
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 130
    assert out == b""
    assert mine not in rock("ps", "-q").stdout.split()


def test_usage_errors_are_one_line_and_exit_125() -> None:
    r = rock("imgaes", "ls")
    assert r.returncode == 125
    assert r.stderr == (
        "rock: No such command 'imgaes'. Did you mean 'images'? (see 'rock --help')\n"
    )
    r = rock("images", "prune", "--max-sise", "1g")
    assert r.returncode == 125
    assert r.stderr.startswith("rock images prune: No such option: --max-sise")


def test_version_and_help() -> None:
    r = rock("--version")
    assert r.returncode == 0 and r.stdout.strip()
    assert rock("version").stdout == r.stdout
    r = rock("images", "prune", "--help")  # it had an unescaped '%' once
    assert r.returncode == 0 and "50%" in r.stdout
    r = rock()
    assert r.returncode == 0 and r.stdout.startswith("Usage: rock")


def test_shell_completion_offers_commands_and_subcommands() -> None:
    env = {**os.environ, "_ROCK_COMPLETE": "complete_bash", "COMP_WORDS": "rock ima"}
    done = subprocess.run(
        [sys.executable, "-m", "rock_sdk._cli"],
        env={**env, "COMP_CWORD": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["images"]
    env["COMP_WORDS"] = "rock images "
    done = subprocess.run(
        [sys.executable, "-m", "rock_sdk._cli"],
        env={**env, "COMP_CWORD": "2"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["ls", "warm", "prune"]


def test_ps_and_rm(docker_engine: None) -> None:
    r = rock("ps")
    assert r.returncode == 0
    assert r.stdout.split("\n")[0].split() == ["SANDBOX", "IMAGE", "STATE", "AGE", "OWNER", "HOST"]
    r = rock("rm", "sb-does-not-exist")
    assert r.returncode == 125
    assert r.stderr == "rock rm: no sandbox 'sb-does-not-exist' on any host\n"


def test_agent_version() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "rock_agent", "version"], capture_output=True, text=True
    )
    assert r.returncode == 0
    assert r.stdout.strip()
