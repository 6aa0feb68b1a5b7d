"""`rock jobs`: a sandbox's background jobs from another program: spawn, ls (table, -q,
--json), logs (from a cursor, following), wait (the job's own exit code, 124), kill; every
error said once with exit 125."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from .test_cli import cli, held_sandboxes

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def held(docker_engine: None) -> Iterator[str]:
    with held_sandboxes(1) as (sandbox,):
        yield sandbox


def test_spawn_list_read_and_wait_for_a_job(held: str) -> None:
    code, out, err = cli("jobs", "spawn", "--id", "build", held[:9], "--", "echo one; exit 6")
    assert (code, out, err) == (0, b"build\n", b"")
    code, out, err = cli("jobs", "wait", held, "build")
    assert (code, out, err) == (6, b"", b"")
    code, out, _ = cli("jobs", "ls", held)
    header, row = out.decode().splitlines()
    assert header.split() == ["JOB", "STATE", "EXIT", "OUTPUT", "AGE", "COMMAND"]
    assert row.split()[:4] == ["build", "exited", "6", "4B"]
    code, out, _ = cli("jobs", "ls", "--json", held)
    (info,) = [json.loads(line) for line in out.decode().splitlines()]
    assert (info["job_id"], info["exit_code"], info["command"]) == ("build", 6, "echo one; exit 6")
    assert (info["state"], info["output_bytes"], info["truncated"]) == ("exited", 4, False)
    assert cli("jobs", "logs", held, "build") == (0, b"one\n", b"")
    assert cli("jobs", "logs", "--cursor", "2", "-f", held, "build") == (0, b"e\n", b"")
    assert cli("jobs", "ls", "-q", held)[1] == b"build\n"


def test_several_words_are_an_argv_and_kill_reports_the_job(held: str) -> None:
    code, out, _ = cli("jobs", "spawn", held, "--", "sh", "-c", "echo $0; sleep 60", "it's")
    job = out.decode().strip()
    assert code == 0 and job.startswith("job-")
    code, out, err = cli("jobs", "wait", "--timeout", "0.3", held, job)
    assert (code, out) == (124, b"")
    assert err.decode() == f"rock jobs wait: job {job} still runs after 0.3\n"
    code, out, _ = cli("jobs", "kill", "--json", "-s", "KILL", held, job)
    info = json.loads(out)
    assert (code, info["state"], info["exit_code"]) == (0, "exited", 137)
    assert info["command"] == "sh -c 'echo $0; sleep 60' 'it'\"'\"'s'"
    assert cli("jobs", "logs", held, job)[1].startswith(b"it's\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("jobs", "spawn", "{id}"),
            "rock jobs spawn: give the command after --, e.g. rock jobs spawn ID -- make test",
        ),
        (
            ("jobs", "spawn", "--id", "../x", "{id}", "--", "true"),
            "rock jobs spawn: a job id is 1 to 64",
        ),
        (
            ("jobs", "spawn", "--output-limit", "-1", "{id}", "--", "true"),
            "rock jobs spawn: --output-limit",
        ),
        (("jobs", "logs", "{id}", "ghost"), "rock jobs logs: sandbox {id} has no job 'ghost'"),
        (("jobs", "wait", "{id}", "ghost"), "rock jobs wait: sandbox {id} has no job 'ghost'"),
        (
            ("jobs", "wait", "--timeout", "soon", "{id}", "ghost"),
            "rock jobs wait: --timeout 'soon'",
        ),
        (("jobs", "kill", "-s", "NOPE", "{id}", "build"), "rock jobs kill: no signal 'NOPE'"),
        (("jobs", "ls", "sb-no-such-sandbox"), "rock jobs ls: no sandbox 'sb-no-such-sandbox'"),
    ],
)
def test_errors_exit_125_with_one_line(held: str, args: tuple[str, ...], message: str) -> None:
    if args[1] == "kill":  # a job to signal must exist first
        cli("jobs", "spawn", "--id", "build", held, "--", "true")
    code, out, err = cli(*(arg.format(id=held) for arg in args))
    assert (code, out) == (125, b"")
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(id=held)), lines
