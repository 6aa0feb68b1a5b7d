"""`rock jobs ...`: background jobs of a sandbox, from any program (docs/jobs.md).

A job's state lives in its sandbox, so these commands see the jobs a trainer spawned, and
re-attach to them after the trainer, its link or the agent went away.

Rules:
- `jobs ls` shows `JobInfo`s: the table and ``--json`` are the same rows.
- `jobs spawn ID -- CMD...` prints the new job's id; a single CMD word is a shell command line
  (``rock jobs spawn ID -- 'make test | tail'``), several are quoted as an argv.
- `jobs logs` writes the output's exact bytes from a byte cursor (``-f`` follows until the job
  ends; Ctrl-C exits 130).
- `jobs wait` exits with the job's own exit code; 124 when `--timeout` ran out first; 125 (rock
  failed) for a lost job, which has no exit code.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer

from rock_core import BadRequest, locate_sandbox

from ._cli_base import (
    ExitCode,
    Interrupts,
    emit,
    new_typer,
    open_admin,
    resolve_ids,
    run_async,
    run_interruptible,
    say_error,
)
from ._cli_format import Column, duration, parse_duration, parse_size, show_rows, size_text
from ._jobs import DEFAULT_JOB_OUTPUT, Job, JobInfo, check_job_id, list_jobs, spawn

jobs_app = new_typer("Start, list, read, wait for and kill background jobs of a sandbox.")

Sandbox = Annotated[str, typer.Argument(metavar="ID", help="a sandbox id or unique prefix")]
JobId = Annotated[str, typer.Argument(metavar="JOB")]
Json = Annotated[bool, typer.Option("--json", help="one JSON object per line")]


@asynccontextmanager
async def _job(given: str, job_id: str) -> AsyncIterator[Job]:
    check_job_id(job_id)
    async with open_admin() as cluster:
        (sandbox_id,) = await resolve_ids(cluster, [given])
        conn, _ = await locate_sandbox(cluster.hosts, sandbox_id)
        job = Job(conn.call, sandbox_id, job_id)
        await job.info()  # a missing job is said before anything else is done
        yield job


def _exit_text(info: JobInfo) -> str:
    return "-" if info.exit_code is None else str(info.exit_code)


def _output_text(info: JobInfo) -> str:
    return size_text(info.output_bytes) + (" (cut)" if info.truncated else "")


JOB_COLUMNS: list[Column[JobInfo]] = [
    Column("JOB", lambda j: j.job_id),
    Column("STATE", lambda j: j.state),
    Column("EXIT", _exit_text),
    Column("OUTPUT", _output_text),
    Column("AGE", lambda j: duration(max(0.0, time.time() - j.started_at), compact=True)),
    Column("COMMAND", lambda j: j.command if len(j.command) <= 60 else j.command[:57] + "..."),
]


@jobs_app.command("ls")
def ls(
    ctx: typer.Context,
    sandbox: Sandbox,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="only job ids")] = False,
    json: Json = False,
) -> None:
    """List a sandbox's background jobs, oldest first."""

    async def body() -> None:
        async with open_admin() as cluster:
            (sandbox_id,) = await resolve_ids(cluster, [sandbox])
            conn, _ = await locate_sandbox(cluster.hosts, sandbox_id)
            found = await list_jobs(conn.call, sandbox_id)
        if quiet:
            for info in found:
                print(info.job_id)
            return
        show_rows(found, JOB_COLUMNS, json=json)

    run_async(ctx, body)


jobs_app.command("list", hidden=True)(ls)


@jobs_app.command("spawn", context_settings={"allow_interspersed_args": False})
def spawn_(
    ctx: typer.Context,
    sandbox: Sandbox,
    command: Annotated[list[str] | None, typer.Argument(metavar="-- COMMAND [ARG...]")] = None,
    job_id: Annotated[str | None, typer.Option("--id", metavar="JOB", help="its id")] = None,
    output_limit: Annotated[
        str | None,
        typer.Option("--output-limit", metavar="SIZE", help="output kept (default 64m)"),
    ] = None,
    json: Json = False,
) -> None:
    """Start a command as a background job and print its id."""
    argv = list(command or [])
    argv = argv[1:] if argv[:1] == ["--"] else argv
    line = argv[0] if len(argv) == 1 else shlex.join(argv)

    async def body() -> None:
        if not argv:
            raise BadRequest("give the command after --, e.g. rock jobs spawn ID -- make test")
        limit = DEFAULT_JOB_OUTPUT
        if output_limit is not None:
            limit = parse_size(output_limit, "--output-limit")
        async with open_admin() as cluster:
            (sandbox_id,) = await resolve_ids(cluster, [sandbox])
            conn, _ = await locate_sandbox(cluster.hosts, sandbox_id)
            job = await spawn(conn.call, sandbox_id, line, job_id=job_id, output_limit=limit)
            info = await job.info() if json else None
        if info is not None:
            show_rows([info], JOB_COLUMNS, json=True)
        else:
            print(job.job_id)

    run_async(ctx, body)


@jobs_app.command("logs")
def logs(
    ctx: typer.Context,
    sandbox: Sandbox,
    job_id: JobId,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="until the job ends")] = False,
    cursor: Annotated[int, typer.Option("--cursor", metavar="BYTES", help="start here")] = 0,
) -> None:
    """Write a job's output (stdout and stderr as the job wrote them) from a byte cursor."""

    async def body(interrupts: Interrupts) -> int:
        async with _job(sandbox, job_id) as job:
            with interrupts.cancels():
                async for chunk in job.stream(cursor, follow=follow):
                    if not emit(sys.stdout.buffer, chunk):
                        break  # the reader left (`| head`): what it read is all it wanted
        return int(ExitCode.OK)

    run_interruptible(ctx, body)


@jobs_app.command("wait")
def wait(
    ctx: typer.Context,
    sandbox: Sandbox,
    job_id: JobId,
    timeout: Annotated[
        str | None, typer.Option("--timeout", metavar="DURATION", help="30, 30s, 5m, 2h")
    ] = None,
) -> None:
    """Wait for a job to end and exit with its exit code (124 if --timeout runs out)."""

    async def body(interrupts: Interrupts) -> int:
        seconds = None if timeout is None else parse_duration(timeout)
        async with _job(sandbox, job_id) as job:
            with interrupts.cancels():
                try:
                    info = await job.wait(seconds)
                except TimeoutError:
                    say_error(ctx.command_path, f"job {job_id} still runs after {timeout}")
                    return int(ExitCode.TIMED_OUT)
                if info.exit_code is None:
                    raise BadRequest(f"job {job_id} is lost: it ended with no exit code")
                return info.exit_code
        return int(ExitCode.INTERRUPTED)

    run_interruptible(ctx, body)


@jobs_app.command("kill")
def kill(
    ctx: typer.Context,
    sandbox: Sandbox,
    job_id: JobId,
    signal: Annotated[str, typer.Option("-s", "--signal", help="TERM, KILL, INT or a number")] = (
        "TERM"
    ),
    json: Json = False,
) -> None:
    """Send a signal to a job's processes and show its state after."""

    async def body() -> None:
        async with _job(sandbox, job_id) as job:
            info = await job.kill(int(signal) if signal.isdigit() else signal)
        show_rows([info], JOB_COLUMNS, json=json)

    run_async(ctx, body)


__all__ = ["jobs_app"]
