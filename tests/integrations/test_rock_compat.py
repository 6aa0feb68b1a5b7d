"""`rock_sdk.compat.rock`: ROCK's own README snippet and our ROCK-style scripts, on real Docker.

ROCK's README sandbox snippet is read at test time from the `rl-rock` wheel's METADATA (the
wheel `scripts/extras/rock.sh` downloads; it is never installed), its imports are changed to
`rock_sdk.compat.rock` and nothing else, and it runs. The scripts of examples/rock_compat and
the python blocks of docs/integrations.md's "ROCK scripts" section run as programs.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from rock_sdk import BadRequest, CommandFailed, FileNotFound, SessionNotFound
from rock_sdk.compat import _rock_plans as plans
from rock_sdk.compat import rock
from tests.conftest import SH_IMAGE

ROOT = Path(__file__).resolve().parents[2]
WHEEL = Path(
    os.environ.get("ROCK_RL_ROCK_WHEEL", "/opt/rock-extras/rl-rock/rl_rock-1.11.0-py3-none-any.whl")
)
IMPORT = re.compile(r"^from rock(?:\.[\w.]+)? import (.+)$", re.MULTILINE)


def readme_snippet() -> str:
    """The python block of ROCK's README that uses its sandbox client, from the wheel."""
    if not WHEEL.is_file():
        reason = f"{WHEEL} is missing: run scripts/extras/rock.sh"
        if os.environ.get("ROCK_REQUIRE_EXTRAS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with zipfile.ZipFile(WHEEL) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = wheel.read(name).decode()
    blocks = re.findall(r"```python\n(.*?)```", metadata, re.DOTALL)
    found = [block for block in blocks if "rock.sdk.sandbox.client" in block]
    assert len(found) == 1, f"expected one sandbox snippet in {WHEEL.name}, found {len(found)}"
    return found[0]


def port(code: str) -> str:
    """`code` with every ``from rock... import X`` made ``from rock_sdk.compat.rock import X``."""
    return IMPORT.sub(r"from rock_sdk.compat.rock import \1", code)


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    pairs = zip(before.splitlines(), after.splitlines(), strict=True)
    return [(a, b) for a, b in pairs if a != b]


def test_the_port_changes_only_import_lines() -> None:
    snippet = readme_snippet()
    ported = port(snippet)
    changed = changed_lines(snippet, ported)
    assert len(changed) == 3, changed
    for old, new in changed:
        assert old.startswith("from rock") and new.startswith("from rock_sdk.compat.rock import")
    assert "rock.sdk" not in ported and "rock.actions" not in ported


@pytest.mark.docker
@pytest.mark.anyio
async def test_rocks_readme_snippet_runs_with_changed_imports() -> None:
    namespace: dict[str, Any] = {"__name__": "rock_readme_snippet"}
    exec(compile(port(readme_snippet()), "ROCK README (ported)", "exec"), namespace)
    seen: list[tuple[str | None, str]] = []

    class Watched(namespace["Sandbox"]):  # type: ignore[misc]
        """The snippet's Sandbox, noting what its commands return (the snippet prints none)."""

        async def arun(self, *args: Any, **kwargs: Any) -> rock.Observation:
            result: rock.Observation = await super().arun(*args, **kwargs)
            seen.append((self.sandbox_id, result.output))
            return result

    namespace["Sandbox"] = Watched
    await namespace["run_sandbox"]()
    [(sandbox_id, output)] = seen
    assert output == "Hello Rock"
    assert sandbox_id is not None and not containers_of(sandbox_id), "stop() must release it"


def containers_of(sandbox_id: str) -> list[str]:
    listing = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=rock.sandbox={sandbox_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listing.stdout.split()


EXAMPLES = {
    "hello_session.py": "hello from sb-",
    "session_files.py": "line 2 is 'second line'",
    "managed_lifecycle.py": "the answer is 42",
    "write_and_execute.py": "'bundle/sub/nested.txt'",
    "evaluate_task.py": "resolved before the fix: False; after: True",
}


def run_program(args: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=240
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXAMPLES))
def test_example_script_runs(script: str) -> None:
    path = ROOT / "examples" / "rock_compat" / script
    source = path.read_text()
    assert "rock_sdk.compat.rock import" in source and "from rock " not in source
    assert "ROCK's examples/" in source, "each script names the ROCK example it follows"
    assert EXAMPLES[script] in run_program([str(path)])


def docs_blocks() -> list[str]:
    text = (ROOT / "docs" / "integrations.md").read_text()
    section = text.split("\n## ROCK scripts\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_docs_section_has_python_blocks() -> None:
    assert docs_blocks(), "the ROCK scripts section shows its use in python"


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(docs_blocks())))
def test_docs_block_runs(index: int, tmp_path: Path) -> None:
    script = tmp_path / f"block{index}.py"
    script.write_text(docs_blocks()[index])
    run_program([str(script)])


# ---------------------------------------------------------------------------- behaviour


@pytest.fixture(scope="module")
async def sandbox() -> Any:
    sb = rock.Sandbox(rock.SandboxConfig(memory="1g", cpus=1))
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


@pytest.mark.docker
@pytest.mark.anyio
async def test_a_failing_command_in_a_session_raises_unless_its_action_says_otherwise(
    sandbox: rock.Sandbox,
) -> None:
    with pytest.raises(
        CommandFailed, match=r"command 'echo oops; false' exited 1; it printed: oops"
    ):
        await sandbox.arun("echo oops; false")
    with pytest.raises(SessionNotFound, match="has no session 'default'"):
        await sandbox.run_in_session(rock.BashAction(command="true"))  # ROCK's default session
    await sandbox.create_session(rock.CreateBashSessionRequest(session="checks"))
    silent = rock.BashAction(command="(exit 3)", session="checks", check="silent")
    assert (await sandbox.run_in_session(silent)).exit_code == 3
    ignore = rock.BashAction(command="false", session="checks", check="ignore")
    ignored = await sandbox.run_in_session(ignore)
    assert ignored.exit_code is None
    with pytest.raises(SessionNotFound):
        await sandbox.arun("true", session="never-opened")
    with pytest.raises(BadRequest, match="arun: mode must be 'normal' or 'nohup', got 'later'"):
        await sandbox.arun("true", mode="later")


@pytest.mark.docker
@pytest.mark.anyio
async def test_sessions_keep_state_and_source_their_startup_files(sandbox: rock.Sandbox) -> None:
    await sandbox.write_file(rock.WriteFileRequest(path="/tmp/rc.sh", content="GREETING=hi\n"))
    request = rock.CreateBashSessionRequest(
        session="sourced", startup_source=["/tmp/rc.sh"], env={"WHO": "you"}
    )
    await sandbox.create_session(request)
    await sandbox.arun("cd /tmp", session="sourced")
    said = await sandbox.arun("echo $GREETING $WHO from $(pwd)", session="sourced")
    assert said.output == "hi you from /tmp"
    await sandbox.close_session(rock.CloseBashSessionRequest(session="sourced"))
    with pytest.raises(SessionNotFound):
        await sandbox.arun("true", session="sourced")
    with pytest.raises(BadRequest, match="remote_user='nobody' is not supported"):
        await sandbox.create_session(rock.CreateBashSessionRequest(remote_user="nobody"))
    broken = rock.CreateBashSessionRequest(session="broken", startup_source=["/no/such/rc"])
    with pytest.raises(CommandFailed, match="sourcing '/no/such/rc' exited"):
        await sandbox.create_session(broken)


@pytest.mark.docker
@pytest.mark.anyio
async def test_nohup_returns_the_output_file_or_where_it_is(sandbox: rock.Sandbox) -> None:
    ran = await sandbox.arun("bash -c 'echo out; echo err >&2; exit 4'", mode="nohup")
    # ROCK's meaning: exit code 0 says the command finished in time, not how it exited.
    assert (ran.output, ran.exit_code, ran.failure_reason) == ("out\nerr", 0, "")
    head = await sandbox.arun(
        "seq 1000", mode="nohup", response_limited_bytes_in_nohup=4, wait_interval=0.1
    )
    assert head.output == "1\n2"
    kept = await sandbox.arun(
        "echo kept", mode="nohup", ignore_output=True, output_file="/tmp/logs/run.log"
    )
    assert "Output file: /tmp/logs/run.log" in kept.output and "File size: 5 bytes" in kept.output
    content = await sandbox.read_file(rock.ReadFileRequest(path="/tmp/logs/run.log"))
    assert content.content == "kept\n"


@pytest.mark.docker
@pytest.mark.anyio
async def test_temporary_sessions_are_closed_once_their_command_is_done(
    sandbox: rock.Sandbox,
) -> None:
    async def sessions() -> set[str]:
        return set((await sandbox._kit.status()).sessions)  # type: ignore[union-attr]

    before = await sessions()
    assert (await sandbox.arun("echo once")).output == "once"
    assert (await sandbox.arun("echo twice", mode="nohup")).output == "twice"
    with pytest.raises(CommandFailed):
        await sandbox.arun("false")
    assert await sessions() == before
    late = await sandbox.arun("sleep 30", mode="nohup", wait_timeout=0.5, wait_interval=0.1)
    assert late.exit_code == 1
    [kept] = await sessions() - before  # the session of a command still running stays
    assert kept.startswith("bash-")


@pytest.mark.docker
@pytest.mark.anyio
async def test_nohup_failures_come_back_as_observations(sandbox: rock.Sandbox) -> None:
    late = await sandbox.arun("sleep 30", mode="nohup", wait_timeout=1, wait_interval=0.2)
    assert late.exit_code == 1
    assert re.fullmatch(r"process \d+ did not complete within 1s \(it goes on running\)",
                        late.failure_reason)  # fmt: skip
    bad = await sandbox.arun("true", mode="nohup", output_file="logs/noext")
    assert bad.exit_code == 1
    assert bad.failure_reason == (
        "nohup command 'true' failed: output_file 'logs/noext' must name a file with an"
        " extension, such as run.log"
    )
    with pytest.raises(BadRequest, match="wait_timeout must be a positive number of seconds"):
        await sandbox.arun("true", mode="nohup", wait_timeout=0)


@pytest.mark.docker
@pytest.mark.anyio
async def test_nohup_runs_on_an_image_with_only_sh() -> None:
    sb = rock.Sandbox(rock.SandboxConfig(image=SH_IMAGE, memory="256m", cpus=0.5))
    await sb.start()
    try:
        ran = await sb.arun("sh -c 'sleep 1; echo slept'", mode="nohup", wait_interval=0.2)
        assert (ran.output, ran.exit_code) == ("slept", 0)
    finally:
        await sb.stop()


@pytest.mark.docker
@pytest.mark.anyio
async def test_files_and_one_off_commands(sandbox: rock.Sandbox, tmp_path: Path) -> None:
    path = "/tmp/deep/lines.txt"
    text = "".join(f"line {n}\n" for n in range(1, 8))
    assert (await sandbox.write_file(rock.WriteFileRequest(path=path, content=text))).success
    whole = await sandbox.read_file_by_line_range(path, lines_per_request=3)
    part = await sandbox.read_file_by_line_range(path, start_line=3, end_line=5)
    assert whole.content == text and part.content == "line 3\nline 4\nline 5\n"
    failed = await sandbox.write_file(rock.WriteFileRequest(path="/etc/hostname/x", content="x"))
    assert not failed.success and failed.message.startswith("could not write /etc/hostname/x")
    with pytest.raises(FileNotFound):
        await sandbox.read_file(rock.ReadFileRequest(path="/no/such/file"))
    with pytest.raises(CommandFailed, match="could not count the lines of /no/such/file"):
        await sandbox.read_file_by_line_range("/no/such/file")
    local = tmp_path / "up.txt"
    local.write_text("uploaded")
    up = await sandbox.upload(rock.UploadRequest(source_path=str(local), target_path="/tmp/u.txt"))
    assert up.success and up.file_name == "up.txt"
    missing = await sandbox.upload_by_path(tmp_path / "absent", "/tmp/a")
    assert (missing.success, missing.message) == (False, f"no such local file: {tmp_path}/absent")
    shell = await sandbox.execute(
        rock.Command(command="cat /tmp/u.txt; echo $X >&2", env={"X": "1"})
    )
    assert (shell.stdout, shell.stderr, shell.exit_code) == ("uploaded", "1\n", 0)
    argv = await sandbox.execute(rock.Command(command=["pwd"], cwd="/etc"))
    assert argv.stdout == "/etc\n"


@pytest.mark.anyio
async def test_wrong_objects_and_unsupported_settings_are_bad_requests() -> None:
    with pytest.raises(BadRequest, match="Sandbox takes a SandboxConfig, got dict"):
        rock.Sandbox({"image": "python:3.11"})  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match=r"SandboxConfig.num_gpus=1.0 is not supported"):
        rock.Sandbox(rock.SandboxConfig(num_gpus=1.0))
    with pytest.raises(BadRequest, match="image_os='windows': only linux images run"):
        rock.Sandbox(rock.SandboxConfig(image_os="windows"))
    with pytest.raises(BadRequest, match="memory 'lots' is not a size"):
        rock.Sandbox(rock.SandboxConfig(memory="lots"))
    with pytest.raises(BadRequest, match=r"Sandbox: invalid SandboxConfig: Expected `float`"):
        rock.Sandbox(rock.SandboxConfig(cpus="two"))  # type: ignore[arg-type]
    idle = rock.Sandbox(rock.SandboxConfig())
    with pytest.raises(BadRequest, match="the sandbox has not been started"):
        await idle.arun("true", session="s")
    with pytest.raises(
        BadRequest, match="write_file takes a WriteFileRequest, got ReadFileRequest"
    ):
        await idle.write_file(rock.ReadFileRequest(path="/x"))  # type: ignore[arg-type]
    await idle.stop()  # nothing to release: nothing happens, as in ROCK


def test_plans_check_line_ranges_and_cover_them() -> None:
    assert plans.chunks(3, 9, 3) == [(3, 5), (6, 8), (9, 9)]
    assert plans.line_ranges(None, None, 1000) == (1, None)
    with pytest.raises(BadRequest, match="start_line must be 1 or more, got 0"):
        plans.line_ranges(0, None, 10)
    with pytest.raises(BadRequest, match=r"end_line must be an int not before start_line \(5\)"):
        plans.line_ranges(5, 4, 10)
    with pytest.raises(BadRequest, match="lines_per_request must be between 1 and 10000"):
        plans.line_ranges(1, 2, 10001)


def test_plans_for_nohup_runs() -> None:
    assert plans.parse_pid("noise PIDSTART123PIDEND\n") == 123
    assert plans.parse_pid("no pid") is None
    assert plans.output_file_for(None, 7) == ("/tmp/tmp_7.out", "")
    assert plans.output_file_for("run.log", 7) == ("run.log", ".")
    assert plans.wait_line(9, 10) == "while kill -0 9 2>/dev/null; do sleep 0.5; done"
    with pytest.raises(BadRequest, match="wait_interval must be a positive number"):
        plans.check_wait(5, True)


def test_the_public_surface_is_rocks_names_documented() -> None:
    assert len(rock.__all__) == len(set(rock.__all__))
    for name in rock.__all__:
        obj = getattr(rock, name)
        assert inspect.getdoc(obj), f"{name} has no docstring"
        assert obj.__module__.rsplit(".", 1)[1].startswith("_rock_"), f"{name}: {obj.__module__}"
        for attribute, member in vars(obj).items():
            if not attribute.startswith("_") and inspect.isfunction(member):
                assert inspect.getdoc(member), f"{name}.{attribute} has no docstring"
    for name in ("CreateBashSessionRequest", "WriteFileRequest", "ReadFileRequest", "Command"):
        assert name in rock.__all__
