"""Sessions at their edges: the user's shell settings, interactive races and interrupts,
daemonized processes at a timeout, OOM kills, output floods and hostile expect patterns."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import AsyncIterator

import anyio
import pytest

from rock_core import Cluster
from rock_core._protocol import CommandReply, ExecReply, Execute, RunCommand
from rock_core._protocol import CommandResult as WireResult
from rock_core._protocol import ExecResult as WireExecResult
from rock_sdk import (
    BadRequest,
    CommandFailed,
    Sandbox,
    SandboxConfig,
    SessionNotFound,
    open_cluster,
)

from .._host_pid import host_pid
from ..conftest import PY_IMAGE, SH_IMAGE

pytestmark = pytest.mark.anyio

_names = itertools.count()
KIT_TRACES = ("__rock", "/dev/fd/3", "printf", "ROCK_CMD")
KIT_WORDS = ("__rock", "printf", "ROCK_CMD")  # in the kit's lines, never in the user's text


async def fresh(sb: Sandbox, env: dict[str, str] | None = None) -> str:
    return await sb.create_session(f"e{next(_names)}", env=env)


def is_bash(sb: Sandbox) -> bool:
    return sb.config.image == PY_IMAGE


async def wire_run(sb: Sandbox, session: str, command: str, **options: object) -> WireResult:
    """A command's result as the agent sent it (with the fields the SDK does not show)."""
    conn = sb.cluster.connection(sb.sandbox_id)
    request = RunCommand(
        id=conn.next_id(),
        sandbox_id=sb.sandbox_id,
        session=session,
        command=command,
        stream=False,
        **options,  # type: ignore[arg-type]
    )
    reply = await sb.cluster.call(sb.sandbox_id, request, CommandReply)
    return reply.result


async def wire_exec(sb: Sandbox, argv: list[str]) -> WireExecResult:
    conn = sb.cluster.connection(sb.sandbox_id)
    request = Execute(id=conn.next_id(), sandbox_id=sb.sandbox_id, argv=argv, timeout=60)
    return (await sb.cluster.call(sb.sandbox_id, request, ExecReply)).result


# ---------------------------------------------------------------------------- shell settings


async def test_prompt_command_and_ps0_from_the_env_stay_out(sandbox: Sandbox) -> None:
    s = await fresh(sandbox, {"PROMPT_COMMAND": "echo ROCK", "PS0": "zero\\n", "ENV": ""})
    assert (await sandbox.arun("echo hello", session=s)).output == "hello\n"
    assert (await sandbox.arun("printf x", session=s)).output == "x"


async def test_settings_a_command_makes_stay_out_of_later_output(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    await sandbox.arun(
        "export PROMPT_COMMAND='echo ROCK'; PS0='zero '; "
        "alias printf='echo ALIAS'; alias command='echo CMD'; alias builtin='echo B'; "
        "alias eval='echo E'; alias set='echo SET'; alias export='echo X'",
        session=s,
    )
    r = await sandbox.arun("echo hello; echo err >&2", session=s)
    assert r.output == "hello\nerr\n"
    assert r.exit_code == 0
    await sandbox.arun("unalias -a; printf() { echo FN; }", session=s)
    assert (await sandbox.arun("echo again", session=s)).output == "again\n"


async def test_xtrace_shows_the_users_commands_only(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    first = await sandbox.arun("set -x; echo one", session=s)
    r = await sandbox.arun("echo two", session=s)
    level = "++" if is_bash(sandbox) else "+"  # bash traces the sourced text one level down
    assert first.output == f"{level} echo one\none\n"
    assert r.output == f"{level} echo two\ntwo\n"
    assert r.exit_code == 0
    r = await sandbox.arun("set +x; echo three", session=s)
    assert r.output == f"{level} set +x\nthree\n"
    assert (await sandbox.arun("echo four", session=s)).output == "four\n"


async def test_traps_fire_for_the_users_commands_only(py_sandbox: Sandbox) -> None:
    s = await fresh(py_sandbox)
    await py_sandbox.arun("trap 'echo D' DEBUG; trap 'echo E' ERR; trap 'echo R' RETURN", session=s)
    # Bash's `.` holds a DEBUG trap aside (without functrace): it fires for nothing here.
    assert (await py_sandbox.arun("echo hi", session=s)).output == "hi\n"
    r = await py_sandbox.arun("false", session=s)
    assert (r.output, r.exit_code) == ("E\n", 1)
    await py_sandbox.arun("trap - ERR; echo 'echo in' > /tmp/r.sh", session=s)
    # The user's RETURN trap runs when the user's own `.` ends, not when the kit's does.
    assert (await py_sandbox.arun(". /tmp/r.sh", session=s)).output == "in\nR\n"
    assert (await py_sandbox.arun("echo plain", session=s)).output == "plain\n"
    r = await py_sandbox.arun("trap 'echo bye' EXIT; echo last", session=s)
    assert r.output == "last\n"
    r = await py_sandbox.arun("exit 3", session=s)
    assert (r.output, r.exit_code, r.session_closed) == ("bye\n", 3, True)


async def test_set_e_spares_a_final_and_list_and_ends_on_a_failure(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    await sandbox.arun("set -e; cd /tmp", session=s)
    if is_bash(sandbox):
        r = await sandbox.arun("[ -f /no/such/file ] && echo yes", session=s)
        assert (r.output, r.exit_code, r.session_closed) == ("", 1, False)
        assert (await sandbox.arun("pwd", session=s)).output == "/tmp\n"
    r = await sandbox.arun("echo before; false; echo never", session=s, timeout=30)
    assert (r.output, r.exit_code, r.session_closed, r.timed_out) == ("before\n", 1, True, False)
    with pytest.raises(SessionNotFound, match=f"has no session '{s}'"):
        await sandbox.arun("echo again", session=s)


async def test_histfile_never_gets_the_kits_lines(py_sandbox: Sandbox) -> None:
    s = await fresh(py_sandbox, {"HISTFILE": "/dev/stdout"})
    r = await py_sandbox.arun("set -o history; echo hi", session=s)
    assert r.output == "hi\n"
    r = await py_sandbox.arun("exit 5", session=s)
    assert (r.output, r.exit_code, r.session_closed) == ("", 5, True)


async def test_a_command_cannot_take_the_sessions_output_away(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    r = await sandbox.arun("exec >/dev/null 2>&1; echo gone", session=s, timeout=20)
    assert (r.output, r.timed_out) == ("", False)
    assert (await sandbox.arun("echo back", session=s, timeout=20)).output == "back\n"


async def test_late_output_of_an_earlier_background_job_is_not_the_next_commands(
    sandbox: Sandbox,
) -> None:
    s = await fresh(sandbox)
    await sandbox.arun("(sleep 0.3; echo late) &", session=s)
    await anyio.sleep(0.6)
    assert (await sandbox.arun("echo mine", session=s)).output == "mine\n"


async def test_job_notices_stay_out_of_the_output(sandbox: Sandbox) -> None:
    # An interactive shell says `[1] 1234` as a job starts and `[1]+ Done` once it ended.
    s = await fresh(sandbox)
    r = await sandbox.arun("true & sleep 0.3; echo x; sleep 0.1 & echo y", session=s)
    assert (r.output, r.exit_code) == ("x\ny\n", 0)
    await anyio.sleep(0.3)
    assert (await sandbox.arun("echo z", session=s)).output == "z\n"


async def test_rock_cmd_is_exported_whatever_the_users_aliases(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    await sandbox.arun("alias export='echo X'; alias set='echo S'", session=s)
    if is_bash(sandbox):  # ash looks its special builtins up before functions
        await sandbox.arun("export() { :; }; set() { :; }", session=s)
    first = await sandbox.arun("sh -c 'echo $ROCK_CMD'", session=s)
    second = await sandbox.arun("sh -c 'echo $ROCK_CMD'", session=s)
    token, _, n = first.output.strip().rpartition("-")
    then, _, next_n = second.output.strip().rpartition("-")
    assert (len(token), then, int(next_n)) == (16, token, int(n) + 1), (first, second)


async def test_a_syntax_error_keeps_the_users_line_number(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    r = await sandbox.arun("echo a\necho b\nif then fi\necho never", session=s)
    assert r.exit_code == 2
    assert r.output.startswith("a\nb\n")
    assert "syntax error" in r.output
    # (Bash names the sourced file in its message, as `bash` or as `/dev/fd/3`.)
    assert not any(trace in r.output for trace in KIT_WORDS), r.output
    if is_bash(sandbox):  # ash's message has no line number
        assert "line 3: " in r.output
    r = await sandbox.arun("fi", session=s)
    assert (r.exit_code, "syntax error" in r.output) == (2, True)
    assert not any(trace in r.output for trace in KIT_WORDS), r.output
    if is_bash(sandbox):
        assert "line 1: " in r.output
    assert (await sandbox.arun("echo $((1 + 1))", session=s)).output == "2\n"


# ---------------------------------------------------------------------------- interactive


async def test_interrupt_then_wait_returns_and_keeps_the_session(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    for command in ("cat", "while :; do sleep 0.1; done", "read line; echo got $line"):
        proc = await sandbox.start_interactive(command, session=s)
        await anyio.sleep(0.3)
        await proc.interrupt()
        with anyio.fail_after(60):
            result = await proc.wait(timeout=30)
        assert not result.session_closed, command
        assert result.exit_code != 0, command
        assert (await sandbox.arun("echo alive", session=s)).output == "alive\n"


async def test_input_sent_at_once_reaches_the_program(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    for i in range(40):
        proc = await sandbox.start_interactive("read line; echo got:$line", session=s)
        await proc.sendline(f"n{i}")
        with anyio.fail_after(60):
            result = await proc.wait(timeout=20)
        assert (result.output, result.timed_out) == (f"got:n{i}\n", False), i


async def test_a_catastrophic_pattern_is_refused_and_others_keep_answering(
    sandbox: Sandbox, py_sandbox: Sandbox
) -> None:
    other = sandbox  # another sandbox of the same agent
    bystander_session = await fresh(other)
    s = await fresh(py_sandbox)
    # One write: the pattern must see the whole text, which it cannot match, at once.
    proc = await py_sandbox.start_interactive(f"printf '{'a' * 40}!'; cat", session=s)
    answered: list[str] = []

    async def bystander() -> None:
        for i in range(10):
            answered.append((await other.arun(f"echo {i}", session=bystander_session)).output)

    async with anyio.create_task_group() as tg:
        tg.start_soon(bystander)
        with pytest.raises(BadRequest, match=r"expect pattern '\(a\|a\)\+\$' took more than"):
            await proc.expect(r"(a|a)+$", timeout=60)
    assert answered == [f"{i}\n" for i in range(10)]
    assert (await proc.expect(r"a{40}", timeout=10)).index == 0  # the session still works
    await proc.interrupt()
    await proc.wait(timeout=20)


# ---------------------------------------------------------------------------- timeouts


async def test_a_timeout_kills_daemonized_processes_and_spares_other_sessions(
    sandbox: Sandbox,
) -> None:
    s, other = await fresh(sandbox), await fresh(sandbox)
    await sandbox.arun("(sleep 1999 &)", session=other)  # another session's daemon
    r = await sandbox.arun(
        "(sleep 1001 &); sh -c 'sleep 1002 &'; setsid sleep 1003 & sleep 60",
        session=s,
        timeout=1,
    )
    assert r.timed_out
    await anyio.sleep(0.3)
    left = await sandbox.arun(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' 2>/dev/null < $p/cmdline; echo; done "
        "| grep -o 'sleep 1[09]9*[0-9]' | sort",
        session=other,
    )
    assert left.output == "sleep 1999\n"
    await sandbox.close_session(other)
    gone = await sandbox.arun(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' 2>/dev/null < $p/cmdline; echo; done "
        "| grep -c 'sleep 199[9]' || true",
        session=s,
    )
    assert gone.output.strip() == "0"


async def test_a_timeout_ends_a_loop_the_shell_was_slow_to_read(sandbox: Sandbox) -> None:
    # A shell too slow to read its command line before the timeout (as under load): stopped,
    # it gets the kit's SIGINT and its end lines with the command line still unread, and
    # reads them all at once when it runs again. Ash then throws that input away as it acts
    # on the SIGINT; the kit's next end line must still reach it, and the session live on.
    s = await fresh(sandbox)
    shell = host_pid(sandbox, int((await sandbox.arun("echo $$", session=s)).output))
    result: dict[str, object] = {}

    async def loop() -> None:
        r = await sandbox.arun("while :; do :; done", session=s, timeout=1)
        result.update(timed_out=r.timed_out, closed=r.session_closed)

    os.kill(shell, signal.SIGSTOP)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(loop)
            await anyio.sleep(1.3)  # the kit's first round (at 1 s) has signalled and written
            os.kill(shell, signal.SIGCONT)
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed, when the kit gave up on it
            os.kill(shell, signal.SIGCONT)
    assert result == {"timed_out": True, "closed": False}
    assert (await sandbox.arun("echo alive", session=s, timeout=10)).output == "alive\n"


# ---------------------------------------------------------------------------- OOM, floods


@pytest.fixture
async def own_cluster(docker_engine: None) -> AsyncIterator[Cluster]:
    """A cluster of its own (its own room: the module's sandboxes fill this host's cpus)."""
    async with open_cluster(["local"]) as cluster:
        yield cluster


async def test_an_oom_kill_is_reported(own_cluster: Cluster) -> None:
    sb = Sandbox(SandboxConfig(image=PY_IMAGE, memory="64m", cpus=0.25), cluster=own_cluster)
    await sb.start()
    try:
        s = await fresh(sb)
        hog = "python3 -c 'x = bytearray(512 << 20)'"
        r = await wire_run(sb, s, hog, timeout=60)
        assert (r.exit_code, r.oom_killed, r.session_closed) == (137, True, False)
        assert not (await wire_run(sb, s, "echo fine")).oom_killed
        e = await wire_exec(sb, ["python3", "-c", "x = bytearray(512 << 20)"])
        assert (e.exit_code, e.oom_killed) == (137, True)
        assert not (await wire_exec(sb, ["true"])).oom_killed
        # Through the SDK: the result says it, and check=True says why.
        result = await sb.arun(hog, session=s, timeout=60)
        assert (result.exit_code, result.oom_killed) == (137, True)
        with pytest.raises(CommandFailed) as failed:
            await sb.arun(hog, session=s, timeout=60, check=True)
        assert str(failed.value) == (
            f"command {hog!r} was killed by the kernel for memory (exit 137): the sandbox's "
            "memory limit is 64 MiB; give it more with SandboxConfig(memory=...)"
        )
        with pytest.raises(CommandFailed, match=r"^'python3' was killed by the kernel for memory"):
            await sb.execute(["python3", "-c", "x = bytearray(512 << 20)"], check=True)
    finally:
        await sb.delete()


@pytest.fixture
def no_tmp_on_the_agent_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Agents started from now on have no usable temporary folder."""
    monkeypatch.setenv("TMPDIR", "/nonexistent/rock-agent-tmp")


async def test_a_flood_is_kept_in_the_sandbox_not_on_the_agent_host(
    no_tmp_on_the_agent_host: None, own_cluster: Cluster
) -> None:
    # With no temporary folder on the agent's host, nothing of the output can land there.
    sb = Sandbox(SandboxConfig(image=SH_IMAGE, memory="128m", cpus=0.25), cluster=own_cluster)
    await sb.start()
    try:
        s = await fresh(sb)
        r = await sb.arun(
            "head -c 50000000 /dev/zero | tr '\\0' b", session=s, output_limit=1000, timeout=120
        )
        assert (r.truncated, r.total_bytes, r.output_bytes) == (True, 50_000_000, b"b" * 1000)
        check = await sb.arun(
            f"wc -c < {r.output_path}; tr -d b < {r.output_path} | wc -c", session=s
        )
        assert check.output.split() == ["50000000", "0"]
    finally:
        await sb.delete()
