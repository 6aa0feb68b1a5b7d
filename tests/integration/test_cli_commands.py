"""Every `rock` command in-process (typer's runner): its happy path, its error path (message
and exit code) and its ``--json``, on sandboxes another program holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import SH_IMAGE
from .test_cli import cli, held_sandboxes

FAILED = 125


@pytest.fixture(scope="module")
def held(docker_engine: None) -> Iterator[list[str]]:
    with held_sandboxes(2) as ids:
        yield ids


def lines(data: bytes) -> list[str]:
    return data.decode().splitlines()


# ---------------------------------------------------------------------------- exec


def test_exec_keeps_stdout_stderr_and_exit_code_apart(held: list[str]) -> None:
    code, out, err = cli("exec", held[0], "--", "echo out; echo err >&2; exit 7")
    assert (code, out, err) == (7, b"out\n", b"err\n")


def test_exec_argv_stdin_env_and_workdir(held: list[str]) -> None:
    assert cli("exec", held[0], "--", "sort", stdin=b"b\na\n") == (0, b"a\nb\n", b"")
    code, out, _ = cli("exec", "-e", "A=1 2", "-w", "/etc", held[0], "--", 'echo "$A" $(pwd)')
    assert (code, out) == (0, b"1 2 /etc\n")
    code, out, _ = cli("exec", held[0], "--", "printf", "%s|", "a b", "c")
    assert (code, out) == (0, b"a b|c|")


def test_exec_in_a_named_session_keeps_cwd_and_exports(held: list[str]) -> None:
    first = cli("exec", "--session", "t1", held[0], "--", "cd /tmp && export X=kept && Y=local")
    assert first == (0, b"", b"")
    code, out, _ = cli("exec", "--session", "t1", held[0], "--", 'echo "$X|$Y|$(pwd)"')
    assert (code, out) == (0, b"kept||/tmp\n")
    code, out, _ = cli("exec", held[0], "--", 'echo "$X|$(pwd)"')
    assert (code, out) == (0, b"|/\n"), "a one-off call starts afresh"


def test_exec_timeout_and_max_output(held: list[str]) -> None:
    code, out, err = cli("exec", "--timeout", "1", held[0], "--", "echo a; sleep 30")
    assert (code, out, err) == (124, b"a\n", b"rock exec: the command timed out after 1 s\n")
    code, out, err = cli("exec", "--max-output", "1k", held[0], "--", "head -c 5000 /dev/zero")
    assert (code, out) == (0, bytes(1024))
    assert err == b"rock exec: output cut at 1024 bytes (--max-output)\n"


def test_exec_by_prefix_and_its_errors(held: list[str]) -> None:
    assert cli("exec", held[0][:-2], "--", "echo", "ok")[:2] == (0, b"ok\n")
    code, out, err = cli("exec", "sb-", "--", "true")
    assert (code, out) == (FAILED, b"")
    assert err.decode().startswith("rock exec: sandbox id prefix 'sb-' is ambiguous: it matches ")
    assert all(sandbox_id in err.decode() for sandbox_id in held)
    assert cli("exec", "sb-nope", "--", "true") == (
        FAILED,
        b"",
        b"rock exec: no sandbox 'sb-nope' on any host\n",
    )
    assert cli("exec", held[0]) == (
        FAILED,
        b"",
        b"rock exec: give the command after --, e.g. rock exec ID -- ls /\n",
    )
    assert cli("exec", "-e", "NOEQUALS", held[0], "--", "true") == (
        FAILED,
        b"",
        b"rock exec: -e wants KEY=VALUE, got 'NOEQUALS'\n",
    )
    assert cli("exec", "--session", "a b", held[0], "--", "true") == (
        FAILED,
        b"",
        b"rock exec: --session 'a b': use letters, digits, '.', '_' or '-'\n",
    )
    assert cli("exec", "--timeout", "soon", held[0], "--", "true") == (
        FAILED,
        b"",
        b"rock exec: --timeout 'soon' is not a duration such as '30', '30s', '5m' or '2h'\n",
    )


# ---------------------------------------------------------------------------- run


def test_run_in_process(docker_engine: None) -> None:
    code, out, err = cli("run", SH_IMAGE, "--", "cat; echo done >&2", stdin=b"piped\n")
    assert (code, out, err) == (0, b"piped\n", b"done\n")
    assert cli("run", SH_IMAGE) == (
        FAILED,
        b"",
        b"rock run: give the command after --, e.g. rock run python:3.11 -- ls /\n",
    )
    code, _, err = cli("run", "--memory", "lots", SH_IMAGE, "--", "true")
    assert code == FAILED and err.startswith(b"rock run: memory 'lots' is not a size")


# ---------------------------------------------------------------------------- cp


def test_cp_files_and_folders_both_ways(held: list[str], tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_bytes(b"\x00one\xff")
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "f").write_text("deep")
    sandbox = held[1]
    code, _, err = cli("cp", str(tmp_path / "one.txt"), f"{sandbox}:/tmp/")
    assert code == 0 and err.startswith(b"copied file /tmp/one.txt (")
    assert cli("cp", str(tmp_path / "tree"), f"{sandbox}:/tmp/copied")[0] == 0
    assert cli("exec", sandbox, "--", "cat /tmp/one.txt /tmp/copied/sub/f")[1] == b"\x00one\xffdeep"

    back = tmp_path / "back"
    back.mkdir()
    assert cli("cp", f"{sandbox}:/tmp/copied", str(back))[0] == 0
    assert (back / "copied" / "sub" / "f").read_text() == "deep"
    assert cli("cp", f"{sandbox[:-1]}:/tmp/one.txt", str(back / "x"))[0] == 0
    assert (back / "x").read_bytes() == b"\x00one\xff"


def test_cp_errors(held: list[str], tmp_path: Path) -> None:
    assert cli("cp", "a", "b") == (
        FAILED,
        b"",
        b"rock cp: give one path as ID:/path (in the sandbox) and one local path\n",
    )
    code, out, err = cli("cp", f"{held[1]}:/no/such", str(tmp_path))
    assert (code, out) == (FAILED, b"")
    assert err.startswith(b"rock cp: /no/such: no such file or folder in sandbox ")


# ---------------------------------------------------------------------------- listings


def test_ps_and_its_ls_alias_table_quiet_and_json(held: list[str]) -> None:
    code, out, _ = cli("ps")
    table = lines(out)
    assert code == 0 and table[0].split() == ["SANDBOX", "IMAGE", "STATE", "AGE", "OWNER", "HOST"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows[held[0]][1:3] == [SH_IMAGE, "running"]
    code, alias, _ = cli("ls")  # other tests' sandboxes come and go meanwhile
    assert code == 0 and lines(alias)[0] == table[0] and held[0] in alias.decode()
    assert set(held) <= set(lines(cli("ls", "-q")[1]))
    code, out, _ = cli("ps", "--json")
    found = {row["sandbox_id"]: row for row in map(json.loads, lines(out))}
    assert code == 0 and found[held[0]]["image"] == SH_IMAGE
    assert found[held[0]]["owner"] == rows[held[0]][4], "the same rows as the table"
    code, _, err = cli("ps", "--all")
    assert code == FAILED and err.startswith(b"rock ps: No such option: --all")


def test_images_ls_list_alias_json_and_errors(docker_engine: None) -> None:
    code, out, _ = cli("images", "ls")
    assert code == 0 and lines(out)[0].split()[:3] == ["HOST", "IMAGE", "ID"]
    assert any(line.split()[1] == SH_IMAGE for line in lines(out)[1:])
    assert cli("images", "list")[0] == 0
    code, out, _ = cli("images", "ls", "--json")
    rows = [json.loads(line) for line in lines(out)]
    assert code == 0 and any(SH_IMAGE in row["tags"] for row in rows)
    assert {"host", "image_id", "size", "created", "last_used", "containers"} <= set(rows[0])
    code, _, err = cli("images", "prune", "--max-size", "lots")
    assert code == FAILED
    assert err == b"rock images prune: --max-size 'lots' is not a size such as '512m' or '1g'\n"
    code, _, err = cli("images", "warm", "rock-test/no-such:1", "--help")
    assert code == 0


def test_pool_ls_json_and_rm_errors(docker_engine: None) -> None:
    code, out, _ = cli("pool", "ls", "no-such-pool")
    assert (code, lines(out)) == (0, ["POOL  SANDBOX  IMAGE  STATE  AGE  OWNER  HOST  SIZE"])
    assert cli("pool", "ls", "--json", "no-such-pool") == (0, b"", b"")
    assert cli("pool", "list", "-q", "no-such-pool") == (0, b"", b"")
    assert cli("pool", "rm", "no-such-pool") == (
        FAILED,
        b"",
        b"rock pool rm: no members of pool 'no-such-pool' here\n",
    )


def test_env_ls_show_json_and_errors(tmp_path: Path) -> None:
    hub = ["env", "--hub", str(tmp_path)]
    assert cli(*hub, "register", "w", "--env", "game:Wordle-v0", "--tag", "words")[0] == 0
    code, out, _ = cli(*hub, "ls")
    assert code == 0 and lines(out)[1].split()[:3] == ["w", "game:Wordle-v0", "words"]
    code, out, _ = cli(*hub, "list", "--json")
    (row,) = map(json.loads, lines(out))
    assert code == 0 and (row["name"], row["env"], row["tags"]) == (
        "w",
        "game:Wordle-v0",
        ["words"],
    )
    code, out, _ = cli(*hub, "show", "--json", "w")
    assert code == 0 and json.loads(out) == row
    assert cli(*hub, "register", "x", "--env", "a:B", "--entry-point", "m:f") == (
        FAILED,
        b"",
        b"rock env register: give one of --env and --entry-point, not several\n",
    )
    code, out, err = cli(*hub, "rm", "w", "nope")
    assert (code, out) == (FAILED, b"w\n")
    assert err.startswith(b"rock env rm: no environment named 'nope' in the hub; the hub at ")


# ---------------------------------------------------------------------------- status and friends


def test_status_by_prefix_as_text_and_json(held: list[str]) -> None:
    code, out, _ = cli("status", held[0][:-3])
    fields = dict(line.split(None, 1) for line in lines(out) if not line.startswith(" "))
    assert code == 0 and fields["sandbox"] == held[0] and fields["state"] == "running"
    code, out, _ = cli("status", "--json", held[0])
    report = json.loads(out)
    assert code == 0 and report["sandbox_id"] == held[0] and report["host"] == fields["host"]
    assert cli("status", "sb-nope") == (
        FAILED,
        b"",
        b"rock status: no sandbox 'sb-nope' on any host\n",
    )


def test_stop_restart_rm_of_unknown_ids_exit_125(docker_engine: None) -> None:
    for verb in ("stop", "restart", "rm"):
        assert cli(verb, "sb-nope") == (
            FAILED,
            b"",
            f"rock {verb}: no sandbox 'sb-nope' on any host\n".encode(),
        )


def test_rm_by_prefix(docker_engine: None) -> None:
    with held_sandboxes(1) as (sandbox,):
        assert cli("rm", sandbox[:-1]) == (0, f"{sandbox}\n".encode(), b"")
        assert sandbox not in lines(cli("ps", "-q")[1])


def test_port_of_an_unknown_sandbox_exits_125(docker_engine: None) -> None:
    assert cli("port", "sb-nope", "80") == (
        FAILED,
        b"",
        b"rock port: no sandbox 'sb-nope' on any host\n",
    )
    code, _, err = cli("port", "sb-nope", "0")
    assert code == FAILED and err.startswith(b"rock port: Invalid value for 'PORT'")
