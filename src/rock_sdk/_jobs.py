"""Background jobs: commands that run in a sandbox detached from any session and any caller.

A job is a folder in the sandbox (``/tmp/.rock-jobs/ID``): the command, its process id, its
output (stdout and stderr together, up to a cap) and, once it ended, its exit code. Everything
a job is lives in the container, so a job outlives the program that spawned it, its link, a
reconnect and a restart of the agent: any program that may act on the sandbox re-attaches by
id (`Sandbox.job`) and reads the output from a byte cursor.

Rules:
- A job is started, read, waited for and killed with one-off execs of POSIX ``sh`` (busybox
  is enough: ``setsid``, ``head``, ``tail``, ``kill``); it needs nothing else from the image.
- The command runs as ``sh -c CMD`` in a session of its own (``setsid``), with stdin from
  ``/dev/null``. Its output is kept up to `output_limit` bytes; the rest is read and dropped
  (`JobInfo.truncated`), never blocking the command.
- `exit_code` is the command's own code, written by its wrapper when it ends (a command ended
  by a signal: 128 + the signal's number, as a shell reports it). `Job.kill` signals the
  command's process group only, so the wrapper sees how it ended. As in a terminal, the
  shells in between may add a line such as ``Terminated`` to the output of a killed command.
  A job whose wrapper is gone with no code (the container restarted, or something killed the
  wrapper) is ``lost``, with no exit code.
- Ids are ours (``job-`` and 12 hex digits) or the caller's (letters, digits, ``-``, ``_``,
  ``.``; at most 64); spawning an id that exists is `AlreadyExists`.
- Every other bad argument is a `BadRequest` naming it; an unknown job is `NotFound`.
"""

from __future__ import annotations

import re
import secrets
import signal as signals
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal, TypeVar

import anyio
import msgspec

from rock_core import AlreadyExists, BadRequest, NotFound, RockError
from rock_core.protocol import ExecReply, Execute, Reply, Request

R = TypeVar("R", bound=Reply)
Call = Callable[[Request, type[R]], Awaitable[R]]

JOBS_DIR = "/tmp/.rock-jobs"
DEFAULT_JOB_OUTPUT = 64 << 20  # bytes of a job's output kept in the sandbox
READ_CHUNK = 4 << 20  # bytes read per exec (an exec's stdout keeps at most 14 MiB)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_POLL_FIRST, _POLL_MAX = 0.05, 1.0

JobState = Literal["running", "exited", "lost"]

# The scripts are POSIX sh, passed as arguments (no quoting of one inside another).
#
# _SPAWN: $1 folder, $2 cap, $3 command, $4 start time, $5 _WRAPPER, $6 _LAUNCH. It starts the
# wrapper in a session of its own and returns once the command runs (`cpid` is written).
_SPAWN = r"""
d=$1
mkdir -p "${d%/*}" || exit 125
mkdir "$d" 2>/dev/null || { [ -d "$d" ] && exit 17; echo "cannot make $d" >&2; exit 125; }
printf %s "$3" > "$d/cmd" && printf %s "$4" > "$d/started" && printf %s "$2" > "$d/limit" ||
  exit 125
setsid sh -c "$5" rock-job "$d" "$2" "$3" "$6" > /dev/null 2>&1 < /dev/null &
for _ in $(seq 1 500); do [ -s "$d/cpid" ] && exit 0; sleep 0.01; done
echo "the job's shell did not start" >&2; exit 125
"""

# _WRAPPER: $1 folder, $2 cap, $3 command, $4 _LAUNCH. It runs the command in a process group
# of its own (so a kill reaches the command, not the wrapper), writes `rc` when the command
# ends, and renames it to `exit` once the output is all written: `exit` means "complete".
# `keep` copies the first N bytes as they come (readers follow the file while the job runs):
# `head -c` buffers its output, so GNU's runs unbuffered under `stdbuf`; where there is no
# `stdbuf` (busybox), dd counts bytes (GNU dd would stop at its first short read).
_WRAPPER = r"""
keep() {
  if command -v stdbuf > /dev/null 2>&1; then stdbuf -o0 head -c "$1"
  else dd bs=65536 count="$1" iflag=count_bytes 2> /dev/null; fi
}
d=$1
echo $$ > "$d/pid.new" && mv "$d/pid.new" "$d/pid"
{ setsid sh -c "$4" rock-job "$d" "$3" >&3 2>&3 3>&-; echo $? > "$d/rc"; } \
  3>&1 > /dev/null 2>&1 < /dev/null |
  { keep "$(($2 + 1))" > "$d/out"; cat > /dev/null; }
mv "$d/rc" "$d/exit"
"""

# _LAUNCH: $1 folder, $2 command: the command's shell, by the process id it records.
_LAUNCH = r"""echo $$ > "$1/cpid" && exec sh -c "$2" """

# _LIST: $1 the jobs folder, $2 one job or none (all). One record per job: id, command's pid,
# wrapper alive (a zombie, not reaped yet by an init, is not), exit code, bytes in `out`,
# limit, start, command length; then the command's bytes.
_LIST = r"""
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  case $(cat "/proc/$1/stat" 2>/dev/null) in *") Z "*) return 1 ;; esac
}
cd "$1" 2>/dev/null || exit 0
for d in ${2:-*}; do
  cpid=$(cat "$d/cpid" 2>/dev/null); [ -n "$cpid" ] || continue  # not launched yet
  alive=0; alive "$(cat "$d/pid")" && alive=1
  code=$(tr -dc 0-9 < "$d/exit" 2>/dev/null); size=$(wc -c < "$d/out" 2>/dev/null | tr -dc 0-9)
  limit=$(tr -dc 0-9 < "$d/limit" 2>/dev/null); started=$(cat "$d/started" 2>/dev/null)
  printf '%s %s %s %s %s %s %s %s\n' "$d" "$cpid" "$alive" "${code:--}" \
    "${size:-0}" "${limit:-0}" "${started:-0}" "$(wc -c < "$d/cmd" | tr -dc 0-9)"
  cat "$d/cmd"
done
"""

# _KILL: $1 folder, $2 signal name. It signals the command's process group (the wrapper
# records how the command ended) and gives it 2 s to end.
_KILL = r"""
d=$1; cpid=$(cat "$d/cpid" 2>/dev/null) || exit 3
[ -f "$d/exit" ] && exit 0
kill -s "$2" -- "-$cpid" 2>/dev/null || kill -s "$2" "-$cpid" 2>/dev/null ||
  kill -s "$2" "$cpid" 2>/dev/null
for _ in $(seq 1 20); do [ -f "$d/exit" ] && break; sleep 0.1; done
"""


class JobInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A job as it is now: ``running``, ``exited`` (with its `exit_code`) or ``lost``."""

    job_id: str
    sandbox_id: str
    command: str
    state: JobState
    exit_code: int | None
    pid: int
    started_at: float
    output_bytes: int  # kept so far (at most `output_limit`)
    output_limit: int
    truncated: bool  # the job printed more than `output_limit`: the rest was dropped


class JobOutput(msgspec.Struct, frozen=True, kw_only=True):
    """Output read from `cursor`: `data`, and the cursor to read on from (`next_cursor`)."""

    data: bytes
    cursor: int
    next_cursor: int
    done: bool  # the job has ended and nothing is left after `next_cursor`


class Job:
    """A handle on one background job; any number of handles may watch the same job."""

    def __init__(self, call: Call[ExecReply], sandbox_id: str, job_id: str) -> None:
        self._call = call
        self.sandbox_id = sandbox_id
        self.job_id = job_id

    def __repr__(self) -> str:
        return f"Job({self.job_id!r}, sandbox={self.sandbox_id!r})"

    @property
    def _folder(self) -> str:
        return f"{JOBS_DIR}/{self.job_id}"

    async def info(self) -> JobInfo:
        """The job's state now (`NotFound` if the sandbox has no such job)."""
        found = await list_jobs(self._call, self.sandbox_id, self.job_id)
        if not found:
            raise NotFound(f"sandbox {self.sandbox_id} has no job {self.job_id!r}")
        return found[0]

    async def read(self, cursor: int = 0, max_bytes: int = READ_CHUNK) -> JobOutput:
        """Output from byte `cursor` on (at most `max_bytes`); `done` once all is read."""
        cursor = _count(cursor, "cursor")
        max_bytes = _count(max_bytes, "max_bytes", least=1)
        state = await self.info()  # first: output read after an end is complete
        script = 'tail -c "+$2" "$1/out" 2>/dev/null | head -c "$3"'
        wanted = max(0, min(max_bytes, state.output_limit - cursor))  # `out` keeps 1 more
        reply = await self._exec(script, self._folder, str(cursor + 1), str(wanted))
        data = reply.result.stdout
        ended = state.state != "running"
        done = ended and cursor + len(data) >= state.output_bytes
        return JobOutput(data=data, cursor=cursor, next_cursor=cursor + len(data), done=done)

    async def stream(self, cursor: int = 0, *, follow: bool = True) -> AsyncIterator[bytes]:
        """The output from `cursor` as it comes; ends when the job has ended and all is read
        (at once without `follow`)."""
        delay = _POLL_FIRST
        while True:
            got = await self.read(cursor)
            if got.data:
                yield got.data
                cursor, delay = got.next_cursor, _POLL_FIRST
                continue
            if got.done or not follow:
                return
            await anyio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    async def wait(self, timeout: float | None = None) -> JobInfo:
        """Wait until the job ends and return it (`exit_code`); `TimeoutError` after `timeout`."""
        if timeout is not None and not (isinstance(timeout, int | float) and timeout >= 0):
            raise BadRequest(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        delay = _POLL_FIRST
        with anyio.fail_after(timeout):
            while True:
                state = await self.info()
                if state.state != "running":
                    return state
                await anyio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX)

    async def kill(self, signal: str | int = "TERM") -> JobInfo:
        """Send `signal` to the job's processes; return its state after (up to 2 s later)."""
        reply = await self._exec(_KILL, self._folder, _signal(signal))
        if reply.result.exit_code == 3:
            raise NotFound(f"sandbox {self.sandbox_id} has no job {self.job_id!r}")
        return await self.info()

    async def _exec(self, script: str, *params: str) -> ExecReply:
        argv = ["sh", "-c", script, "rock-job", *params]
        return await self._call(Execute(sandbox_id=self.sandbox_id, argv=argv), ExecReply)


async def spawn(
    call: Call[ExecReply],
    sandbox_id: str,
    command: str,
    *,
    job_id: str | None = None,
    output_limit: int = DEFAULT_JOB_OUTPUT,
) -> Job:
    """Start `command` as a background job of the sandbox (see the module's rules)."""
    if not isinstance(command, str) or not command.strip():
        raise BadRequest(f"a job's command must be a non-empty string, got {command!r}")
    if "\0" in command:
        raise BadRequest("a job's command cannot contain a NUL byte")
    job_id = check_job_id(job_id) if job_id is not None else f"job-{secrets.token_hex(6)}"
    output_limit = _count(output_limit, "output_limit", least=1)
    job = Job(call, sandbox_id, job_id)
    started = repr(time.time())
    params = (job._folder, str(output_limit), command, started, _WRAPPER, _LAUNCH)
    reply = await job._exec(_SPAWN, *params)
    result = reply.result
    if result.exit_code == 17:
        raise AlreadyExists(f"sandbox {sandbox_id} already has a job {job_id!r}")
    if result.exit_code != 0:
        why = result.stderr.decode(errors="replace").strip() or f"exit code {result.exit_code}"
        raise RockError(f"could not start job {job_id!r} in sandbox {sandbox_id}: {why}")
    return job


async def list_jobs(call: Call[ExecReply], sandbox_id: str, only: str = "") -> list[JobInfo]:
    """The sandbox's jobs (or only job `only`), oldest first."""
    argv = ["sh", "-c", _LIST, "rock-jobs", JOBS_DIR, only]
    reply = await call(Execute(sandbox_id=sandbox_id, argv=argv), ExecReply)
    if reply.result.exit_code != 0:
        why = reply.result.stderr.decode(errors="replace").strip()
        raise RockError(f"could not list the jobs of sandbox {sandbox_id}: {why}")
    return sorted(_parse(reply.result.stdout, sandbox_id), key=lambda j: j.started_at)


def _parse(out: bytes, sandbox_id: str) -> list[JobInfo]:
    jobs, at = [], 0
    while at < len(out):
        end = out.index(b"\n", at)
        fields = out[at:end].decode().split(" ")
        job_id, pid, alive, code, size, limit, started, length = fields
        command = out[end + 1 : end + 1 + int(length)].decode(errors="replace")
        at = end + 1 + int(length)
        exit_code = None if code == "-" else int(code)
        state: JobState = "exited" if exit_code is not None else "running"
        if exit_code is None and alive != "1":
            state = "lost"
        jobs.append(
            JobInfo(
                job_id=job_id,
                sandbox_id=sandbox_id,
                command=command,
                state=state,
                exit_code=exit_code,
                pid=int(pid),
                started_at=float(started),
                output_bytes=min(int(size), int(limit)),
                output_limit=int(limit),
                truncated=int(size) > int(limit),
            )
        )
    return jobs


def check_job_id(job_id: object) -> str:
    """`job_id` if it is a valid job id, else `BadRequest` saying what one looks like."""
    if not isinstance(job_id, str) or not _ID.fullmatch(job_id):
        raise BadRequest(
            f"a job id is 1 to 64 letters, digits, '-', '_' or '.', starting with a letter "
            f"or digit; got {job_id!r}"
        )
    return job_id


def _count(value: object, name: str, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise BadRequest(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def _signal(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            sig = signals.Signals(value)
        except ValueError:
            raise BadRequest(f"no signal number {value}") from None
    elif isinstance(value, str):
        name = value.upper().removeprefix("SIG")
        sig_or_none = getattr(signals.Signals, f"SIG{name}", None)
        if sig_or_none is None:
            raise BadRequest(f"no signal {value!r}; use a name such as TERM, KILL, INT")
        sig = sig_or_none
    else:
        raise BadRequest(f"a signal is a name or a number, got {value!r}")
    return sig.name.removeprefix("SIG")


__all__ = [
    "DEFAULT_JOB_OUTPUT",
    "JOBS_DIR",
    "Job",
    "JobInfo",
    "JobOutput",
    "check_job_id",
    "list_jobs",
    "spawn",
]
