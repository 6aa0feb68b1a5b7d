"""One-off commands: argv, cwd, env, stdin, stdout and stderr apart, exit codes, timeouts."""

from __future__ import annotations

import pytest

from rock_sdk import BadRequest, CommandFailed, FileNotFound, Sandbox

pytestmark = pytest.mark.anyio


async def test_stdout_and_stderr_apart(sandbox: Sandbox) -> None:
    r = await sandbox.execute(["sh", "-c", "echo out; echo err >&2; exit 5"])
    assert r.stdout == "out\n"
    assert r.stderr == "err\n"
    assert r.exit_code == 5
    assert not r.ok


async def test_cwd_and_env(sandbox: Sandbox) -> None:
    r = await sandbox.execute(
        ["sh", "-c", 'pwd; echo "$GREETING"'], cwd="/tmp", env={"GREETING": "hi there"}
    )
    assert r.stdout == "/tmp\nhi there\n"


async def test_argv_is_not_split_by_a_shell(sandbox: Sandbox) -> None:
    r = await sandbox.execute(["printf", "%s|", "a b", "$HOME", "'q'"])
    assert r.stdout == "a b|$HOME|'q'|"


async def test_stdin_is_fed_then_closed(sandbox: Sandbox) -> None:
    r = await sandbox.execute(["cat"], stdin=b"line1\nline2\n", timeout=10)
    assert r.stdout == "line1\nline2\n"
    assert not r.timed_out
    r = await sandbox.execute(["cat"], timeout=10)
    assert r.stdout == ""
    assert r.exit_code == 0


async def test_timeout_kills_the_command(sandbox: Sandbox) -> None:
    r = await sandbox.execute(["sh", "-c", "echo begun; sleep 60"], timeout=1)
    assert r.timed_out
    assert r.stdout == "begun\n"
    assert r.exit_code != 0


async def test_check_raises(sandbox: Sandbox) -> None:
    with pytest.raises(CommandFailed, match="'false' exited 1") as info:
        await sandbox.execute(["false"], check=True)
    assert info.value.result.exit_code == 1


async def test_missing_program(sandbox: Sandbox) -> None:
    with pytest.raises(
        FileNotFound, match=r"cannot run 'no-such-program-xyz' in sandbox .*not found"
    ):
        await sandbox.execute(["no-such-program-xyz"])


async def test_bad_arguments(sandbox: Sandbox) -> None:
    with pytest.raises(
        BadRequest, match=r"^invalid 'exec' request: argv \[\]: Expected `array` of length >= 1$"
    ):
        await sandbox.execute([])
    with pytest.raises(BadRequest, match="takes an argv list"):
        await sandbox.execute("ls -l")  # type: ignore[arg-type]
    with pytest.raises(
        BadRequest, match=r"^invalid 'exec' request: timeout -1: Expected `float` > 0.0$"
    ):
        await sandbox.execute(["true"], timeout=-1)
