"""Session semantics against real containers, on a bash image and on an sh-only busybox image."""

from __future__ import annotations

import itertools

import anyio
import pytest

from rock_sdk import (
    AlreadyExists,
    BadRequest,
    CommandFailed,
    Sandbox,
    SessionNotFound,
)

pytestmark = pytest.mark.anyio

_names = itertools.count()


async def fresh(sb: Sandbox) -> str:
    return await sb.create_session(f"s{next(_names)}")


async def test_state_persists_between_commands(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    await sandbox.arun("cd /tmp && x=5 && export Y=6 && f() { echo fn$x$Y; }", session=s)
    r = await sandbox.arun("pwd; echo $x $Y; f", session=s)
    assert r.output == "/tmp\n5 6\nfn56\n"
    assert r.exit_code == 0


async def test_sessions_are_isolated(sandbox: Sandbox) -> None:
    a, b = await fresh(sandbox), await fresh(sandbox)
    await sandbox.arun("cd /tmp; v=a", session=a)
    r = await sandbox.arun('pwd; echo "[$v]"', session=b)
    assert r.output != "/tmp\n[a]\n"
    assert r.output.endswith("[]\n")


async def test_sessions_run_concurrently(sandbox: Sandbox) -> None:
    # Session A waits for a flag that only session B sets; run one at a time, A never ends.
    a, b = await fresh(sandbox), await fresh(sandbox)
    flag = f"/tmp/flag-{a}"
    results = {}

    async def waiter() -> None:
        results["a"] = await sandbox.arun(
            f"while [ ! -e {flag} ]; do sleep 0.05; done; echo seen", session=a, timeout=20
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(0.2)
        await sandbox.arun(f"touch {flag}", session=b, timeout=20)
    assert results["a"].output == "seen\n"
    assert not results["a"].timed_out


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("printf abc", "abc"),
        ("echo", "\n"),
        ("printf '  padded  \\n\\n'", "  padded  \n\n"),
        ("echo a; echo b >&2; echo c", "a\nb\nc\n"),
        ("echo 'héllo wörld ✓ 日本'", "héllo wörld ✓ 日本\n"),
        ("printf '$ > # PS1\\n'", "$ > # PS1\n"),
        ("true", ""),
    ],
)
async def test_output_is_exact(sandbox: Sandbox, command: str, expected: str) -> None:
    r = await sandbox.arun(command, session=await fresh(sandbox))
    assert r.output == expected
    assert r.output_bytes == expected.encode()


async def test_invalid_utf8_is_kept_in_bytes(sandbox: Sandbox) -> None:
    r = await sandbox.arun("printf '\\377\\376ok'", session=await fresh(sandbox))
    assert r.output_bytes == b"\xff\xfeok"
    assert r.output == "\ufffd\ufffdok"


async def test_forged_marker_cannot_shift_results(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    fake = "__rock_0123456789abcdef0123456789abcdef_0"
    r = await sandbox.arun(f"echo {fake}; printf '%s7\\n' {fake}; echo tail", session=s)
    assert r.output == f"{fake}\n{fake}7\ntail\n"
    assert r.exit_code == 0
    assert (await sandbox.arun("echo next", session=s)).output == "next\n"


@pytest.mark.parametrize(
    ("command", "code"), [("(exit 3)", 3), ("false", 1), ("no_such_command_xyz", 127)]
)
async def test_exit_codes(sandbox: Sandbox, command: str, code: int) -> None:
    r = await sandbox.arun(command, session=await fresh(sandbox))
    assert r.exit_code == code


async def test_missing_command_says_so(sandbox: Sandbox) -> None:
    r = await sandbox.arun("no_such_command_xyz", session=await fresh(sandbox))
    assert "no_such_command_xyz" in r.output
    assert "not found" in r.output


async def test_check_raises_with_the_result(sandbox: Sandbox) -> None:
    with pytest.raises(CommandFailed, match=r"command 'echo out; exit 4' exited 4") as info:
        await sandbox.arun("echo out; exit 4", session=await fresh(sandbox), check=True)
    assert info.value.result.output == "out\n"
    assert info.value.result.exit_code == 4


async def test_timeout_returns_partial_output_and_keeps_the_session(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    await sandbox.arun("cd /tmp; kept=yes", session=s)
    r = await sandbox.arun("echo started; sleep 60; echo never", session=s, timeout=1)
    assert r.timed_out
    assert r.output == "started\n"
    after = await sandbox.arun("pwd; echo $kept", session=s, timeout=10)
    assert after.output == "/tmp\nyes\n"


async def test_timeout_aborts_a_shell_loop(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    r = await sandbox.arun("while :; do :; done", session=s, timeout=1)
    assert r.timed_out
    assert (await sandbox.arun("echo alive", session=s, timeout=10)).output == "alive\n"


async def test_timeout_kills_the_whole_process_tree(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    r = await sandbox.arun(
        "sh -c 'sleep 313 & sleep 314 & wait' & sleep 315; wait", session=s, timeout=1
    )
    assert r.timed_out
    await anyio.sleep(0.3)
    left = await sandbox.arun(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' 2>/dev/null < $p/cmdline; echo; done "
        "| grep -c 'sleep 31[345]' || true",
        session=s,
        timeout=10,
    )
    assert left.output.strip() == "0"


async def test_timeout_escalates_past_a_command_ignoring_sigint(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    r = await sandbox.arun("sh -c 'trap \"\" INT; sleep 60'; echo rest", session=s, timeout=1)
    assert r.timed_out
    assert (await sandbox.arun("echo alive", session=s, timeout=10)).output == "alive\n"


async def test_idle_timeout(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    r = await sandbox.arun("echo first; sleep 60", session=s, idle_timeout=1, timeout=30)
    assert r.idle_timed_out
    assert not r.timed_out
    assert r.output == "first\n"


async def test_stdin_is_closed(sandbox: Sandbox) -> None:
    r = await sandbox.arun("cat; echo done", session=await fresh(sandbox), timeout=10)
    assert not r.timed_out
    assert r.output == "done\n"


async def test_multiline_and_heredoc_followed_by_commands(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    r = await sandbox.arun(
        "cat <<'EOF'\nline one\n  line 'two'\nEOF\necho after\nx=1\necho $x", session=s
    )
    assert r.output == "line one\n  line 'two'\nafter\n1\n"


async def test_quotes_and_special_characters(sandbox: Sandbox) -> None:
    r = await sandbox.arun(
        """printf '%s\\n' "it's" 'say "hi"' '$HOME' 'a\\b' '!bang'""", session=await fresh(sandbox)
    )
    assert r.output == 'it\'s\nsay "hi"\n$HOME\na\\b\n!bang\n'


async def test_background_jobs(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    r = await sandbox.arun("sleep 30 & echo pid=$!", session=s, timeout=10)
    assert not r.timed_out
    assert r.output.startswith("pid=")
    assert (
        await sandbox.arun("kill %1 2>/dev/null || kill $! ; echo ok", session=s)
    ).output.endswith("ok\n")


async def test_syntax_error_is_reported_and_session_survives(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    r = await sandbox.arun("if then fi", session=s)
    assert r.exit_code == 2
    assert "syntax error" in r.output.lower()
    assert (await sandbox.arun("echo fine", session=s)).output == "fine\n"


async def test_exit_closes_the_session(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    r = await sandbox.arun("exit 4", session=s)
    assert r.session_closed
    assert r.exit_code == 4
    with pytest.raises(SessionNotFound, match=f"has no session '{s}'"):
        await sandbox.arun("echo again", session=s)
    await sandbox.create_session(s)  # the name is free again
    assert (await sandbox.arun("echo again", session=s)).output == "again\n"


async def test_output_cap_keeps_full_output_in_a_file(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    r = await sandbox.arun(
        "head -c 3000000 /dev/zero | tr '\\0' a; echo", session=s, output_limit=1 << 20
    )
    assert r.truncated
    assert r.total_bytes == 3_000_001
    assert len(r.output_bytes) == 1 << 20
    assert r.output_bytes == b"a" * (1 << 20)
    assert r.output_path.startswith("/tmp/.rock/output/")
    size = await sandbox.arun(f"wc -c < {r.output_path}", session=s)
    assert size.output.strip() == "3000001"


async def test_output_streams_in_chunks(sandbox: Sandbox) -> None:
    chunks: list[bytes] = []
    r = await sandbox.arun(
        "for i in 1 2 3; do echo $i; sleep 0.2; done",
        session=await fresh(sandbox),
        on_output=chunks.append,
    )
    assert b"".join(chunks) == b"1\n2\n3\n"
    assert len(chunks) >= 2
    assert r.output == "1\n2\n3\n"


async def test_interactive_read(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    proc = await sandbox.start_interactive(
        "printf 'name? '; read name; echo hello $name", session=s
    )
    m = await proc.expect(r"name\? ")
    assert m.index == 0
    await proc.sendline("rock")
    result = await proc.wait(timeout=10)
    assert result.output == "hello rock\n"
    assert result.exit_code == 0
    assert (await sandbox.arun("echo after", session=s)).output == "after\n"


async def test_python_repl_with_expect(py_sandbox: Sandbox) -> None:
    s = await fresh(py_sandbox)
    repl = await py_sandbox.start_interactive("python3 -i -q -u", session=s)
    await repl.expect(r">>> ")
    await repl.sendline("x = 6 * 7")
    await repl.expect(r">>> ")
    await repl.sendline("print(x)")
    m = await repl.expect(r">>> ")
    assert m.before == "42\n"
    await repl.sendline("exit()")
    result = await repl.wait(timeout=10)
    assert result.exit_code == 0


async def test_session_errors(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    with pytest.raises(AlreadyExists, match=f"already has a session '{s}'"):
        await sandbox.create_session(s)
    with pytest.raises(SessionNotFound, match="has no session 'nope'"):
        await sandbox.arun("true", session="nope")
    with pytest.raises(
        BadRequest, match=r"^invalid 'run' request: command .*: must be text with no NUL byte$"
    ):
        await sandbox.arun("echo \x00", session=s)
    with pytest.raises(
        BadRequest, match=r"^invalid 'run' request: timeout 0: Expected `float` > 0.0$"
    ):
        await sandbox.arun("true", session=s, timeout=0)
    with pytest.raises(BadRequest, match="no interactive command running"):
        from rock_sdk import InteractiveProcess

        await InteractiveProcess(sandbox.cluster, sandbox.sandbox_id, s).expect("x")
    # The session still works after every bad request.
    assert (await sandbox.arun("echo ok", session=s)).output == "ok\n"


async def test_close_session_kills_its_processes(sandbox: Sandbox) -> None:
    s = await fresh(sandbox)
    await sandbox.arun("sleep 377 &", session=s)
    await sandbox.close_session(s)
    with pytest.raises(SessionNotFound):
        await sandbox.arun("true", session=s)
    await anyio.sleep(0.2)
    r = await sandbox.arun(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' 2>/dev/null < $p/cmdline; echo; done "
        "| grep -c 'sleep 37[7]' || true",
        session=await fresh(sandbox),
    )
    assert r.output.strip() == "0"


async def test_many_sessions_at_once(sandbox: Sandbox) -> None:
    names = [await fresh(sandbox) for _ in range(6)]
    outputs: dict[str, str] = {}

    async def run(name: str) -> None:
        outputs[name] = (await sandbox.arun(f"sleep 0.3; echo {name}", session=name)).output

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(run, name)
    assert outputs == {name: f"{name}\n" for name in names}


async def test_default_session(sandbox: Sandbox) -> None:
    await sandbox.arun("cd /tmp")
    assert (await sandbox.arun("pwd")).output == "/tmp\n"
