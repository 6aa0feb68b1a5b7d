"""ROCK's `Sandbox`, backed by a `rock_sdk.Sandbox` on this machine's (or a cluster's) engine.

Rules:
- Every method takes ROCK's objects (checked: `BadRequest` for a wrong one) and returns
  ROCK's; where ROCK answers a failure with a response (`success=False`, an `Observation`
  with exit code 1), so does this; anything else raises this kit's `RockError`.
- Commands run on persistent sessions of the sandbox. A command in a session that exits
  non-zero is `CommandFailed` (ROCK raises there too), unless its action says otherwise.
- `stop()` releases the sandbox: it is deleted, as ROCK's server does.
- The shell text of nohup runs and line-range reads is built by `_rock_plans` (no I/O).
"""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path

import anyio

from rock_sdk import BadRequest, CommandFailed, RockError, SandboxState, TimedOut
from rock_sdk import Sandbox as KitSandbox

from . import _rock_plans as plans
from ._rock_models import (
    BashAction,
    CloseBashSessionRequest,
    CloseBashSessionResponse,
    CloseResponse,
    Command,
    CommandResponse,
    CreateBashSessionRequest,
    CreateBashSessionResponse,
    IsAliveResponse,
    Observation,
    ReadFileRequest,
    ReadFileResponse,
    RunMode,
    SandboxConfig,
    SandboxStatusResponse,
    UploadMode,
    UploadRequest,
    UploadResponse,
    WriteFileRequest,
    WriteFileResponse,
    checked,
)

logger = logging.getLogger("rock_sdk.compat.rock")


class Sandbox:
    """ROCK's sandbox client: ``Sandbox(config)``, ``await start()``, ... ``await stop()``."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = checked(config, SandboxConfig, "Sandbox")
        self._kit_config = self.config.to_kit()
        self._url = f"{self.config.base_url}/apis/envs/sandbox/v1"
        self._kit: KitSandbox | None = None

    @property
    def sandbox_id(self) -> str | None:
        """The sandbox's id once started (None before, as in ROCK)."""
        return None if self._kit is None else self._kit.sandbox_id

    @property
    def host_name(self) -> str | None:
        """The host the sandbox runs on."""
        if self._kit is None or self._kit.state is SandboxState.PENDING:
            return None
        return self._kit.cluster.record(self._kit.sandbox_id).host

    @property
    def cluster(self) -> str:
        """ROCK's cluster name from the config (kept, unused here)."""
        return self.config.cluster

    @property
    def url(self) -> str:
        """ROCK's admin URL (kept so scripts that switch it run; no server is called)."""
        return self._url

    @url.setter
    def url(self, value: str) -> None:
        self._url = value

    def _started(self) -> KitSandbox:
        if self._kit is None:
            raise BadRequest("the sandbox has not been started: call await sandbox.start()")
        return self._kit

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Create and start the sandbox; once started, starting again does nothing."""
        if self._kit is not None:
            return
        kit = KitSandbox(self._kit_config)
        await kit.start()
        self._kit = kit

    async def stop(self) -> None:
        """Release the sandbox: delete it and everything in it (ROCK's `stop`)."""
        kit, self._kit = self._kit, None
        if kit is None:
            return
        try:
            await kit.delete()
        except RockError as exc:  # ROCK's stop logs and goes on
            logger.warning("stopping sandbox %s failed: %s", kit.sandbox_id, exc)

    async def delete(self) -> None:
        """Delete the sandbox; unlike `stop()`, an error is raised."""
        kit = self._started()
        await kit.delete()
        self._kit = None

    async def close(self) -> CloseResponse:
        """The same as `stop()`."""
        await self.stop()
        return CloseResponse()

    async def is_alive(self) -> IsAliveResponse:
        """Whether the sandbox runs."""
        status = await self._started().status()
        return IsAliveResponse(is_alive=status.is_running, message=status.host or "")

    async def get_status(self) -> SandboxStatusResponse:
        """The sandbox's state, host, image and resources."""
        status = await self._started().status()
        return SandboxStatusResponse(
            sandbox_id=status.sandbox_id,
            is_alive=status.is_running,
            host_name=status.host,
            image=status.image,
            cpus=self.config.cpus,
            memory=self.config.memory,
            state=status.state.value,
        )

    # ------------------------------------------------------------------ sessions

    async def create_session(self, request: CreateBashSessionRequest) -> CreateBashSessionResponse:
        """Open a named session; its `env` is set and its `startup_source` files sourced."""
        request = checked(request, CreateBashSessionRequest, "create_session")
        if request.remote_user is not None:
            raise BadRequest(
                f"create_session: remote_user={request.remote_user!r} is not supported;"
                " run commands as another user with su or sudo inside the session"
            )
        kit = self._started()
        await kit.create_session(request.session, env=request.env)
        output = ""
        for path in request.startup_source:
            result = await kit.arun(f". {shlex.quote(path)}", request.session)
            output += result.output
            if result.exit_code != 0:
                raise CommandFailed(
                    f"create_session: sourcing {path!r} exited {result.exit_code}: "
                    f"{result.output.strip()}",
                    result=result,
                    exit_code=result.exit_code,
                )
        return CreateBashSessionResponse(output=output)

    async def close_session(self, request: CloseBashSessionRequest) -> CloseBashSessionResponse:
        """End a session's shell."""
        request = checked(request, CloseBashSessionRequest, "close_session")
        await self._started().close_session(request.session)
        return CloseBashSessionResponse()

    async def run_in_session(self, action: BashAction) -> Observation:
        """Run `action.command` in its session (ROCK's older name; `arun` is preferred)."""
        action = checked(action, BashAction, "run_in_session")
        result = await self._started().arun(action.command, action.session, timeout=action.timeout)
        output = result.output.strip()
        if result.timed_out:
            raise TimedOut(
                f"command {action.command!r} timed out after {action.timeout:g}s: {output}",
                result=result,
            )
        if action.check == "raise" and result.exit_code != 0:
            printed = f"; it printed: {output}" if output else ", printing nothing"
            raise CommandFailed(
                f"command {action.command!r} exited {result.exit_code}{printed}",
                result=result,
                exit_code=result.exit_code,
            )
        exit_code = None if action.check == "ignore" else result.exit_code
        return Observation(output=output, exit_code=exit_code)

    async def _temporary_session(self) -> str:
        name = f"bash-{time.time_ns()}"
        await self.create_session(CreateBashSessionRequest(session=name))
        return name

    async def arun(
        self,
        cmd: str,
        session: str | None = None,
        wait_timeout: float = 300,
        wait_interval: float = 10,
        mode: RunMode | str = RunMode.NORMAL,
        response_limited_bytes_in_nohup: int | None = None,
        ignore_output: bool = False,
        output_file: str | None = None,
    ) -> Observation:
        """Run `cmd` in `session` (a new one if None).

        ``mode="normal"``: in the session; a non-zero exit is `CommandFailed`.
        ``mode="nohup"``: in the background; poll until it ends or `wait_timeout` passes, then
        return its output file's content (its first `response_limited_bytes_in_nohup` bytes;
        with `ignore_output`, where the file is instead). Failures come back as an
        `Observation` with exit code 1 and a `failure_reason`.
        """
        if mode not in (RunMode.NORMAL, RunMode.NOHUP):
            raise BadRequest(f"arun: mode must be 'normal' or 'nohup', got {mode!r}")
        if not isinstance(cmd, str) or not cmd.strip():
            raise BadRequest(f"arun: cmd must be a non-empty command line, got {cmd!r}")
        if mode == RunMode.NORMAL:
            if session is not None:
                return await self.run_in_session(BashAction(command=cmd, session=session))
            # ROCK leaves its temporary sessions open; nobody can name one, so close it.
            temporary = await self._temporary_session()
            try:
                return await self.run_in_session(BashAction(command=cmd, session=temporary))
            finally:
                await self._started().close_session(temporary)
        timeout, interval = plans.check_wait(wait_timeout, wait_interval)
        try:
            return await self._nohup(
                cmd, session, timeout, interval, response_limited_bytes_in_nohup,
                ignore_output, output_file,
            )  # fmt: skip
        except RockError as exc:
            reason = f"nohup command {cmd!r} failed: {exc}"
            return Observation(output=reason, exit_code=1, failure_reason=reason)

    async def _nohup(
        self,
        cmd: str,
        session: str | None,
        wait_timeout: float,
        wait_interval: float,
        limit: int | None,
        ignore_output: bool,
        output_file: str | None,
    ) -> Observation:
        kit = self._started()
        stamp = time.time_ns()
        temporary = session is None
        if session is None:
            session = await self._temporary_session()
        out, folder = plans.output_file_for(output_file, stamp)
        if folder:
            await self.run_in_session(
                BashAction(command=f"mkdir -p {shlex.quote(folder)}", session=session)
            )
        started = await kit.arun(plans.start_line(cmd, out), session, timeout=30)
        pid = plans.parse_pid(started.output)
        if started.exit_code != 0 or pid is None:
            reason = f"could not start {cmd!r} in the background: {started.output.strip()}"
            return Observation(output=reason, exit_code=1, failure_reason=reason)
        began = anyio.current_time()
        waited = await kit.arun(plans.wait_line(pid, wait_interval), session, timeout=wait_timeout)
        finished = not waited.timed_out
        outcome = plans.wait_outcome(pid, finished, anyio.current_time() - began, wait_timeout)
        if ignore_output:
            sized = await kit.arun(plans.size_line(out), session)
            text = sized.output.strip()
            size = int(text) if sized.exit_code == 0 and text.isdigit() else None
            output = plans.detached_report(out, finished, outcome, size)
        else:
            output = (await kit.arun(plans.read_line(out, limit), session)).output.strip()
        if finished:
            if temporary:  # one still running would end with its session
                await kit.close_session(session)
            return Observation(output=output, exit_code=0)
        return Observation(output=output, exit_code=1, failure_reason=outcome)

    async def execute(self, command: Command) -> CommandResponse:
        """Run a one-off command (an argv list, or a string run by ``sh -c``) outside any
        session; `env` adds to the sandbox's environment."""
        command = checked(command, Command, "execute")
        argv = (
            ["sh", "-c", command.command] if isinstance(command.command, str) else command.command
        )
        result = await self._started().execute(
            argv, cwd=command.cwd or "", env=command.env, timeout=command.timeout
        )
        if result.timed_out:
            raise TimedOut(f"command {command.command!r} timed out after {command.timeout:g}s")
        return CommandResponse(
            stdout=result.stdout, stderr=result.stderr, exit_code=result.exit_code
        )

    # ------------------------------------------------------------------ files

    async def write_file(self, request: WriteFileRequest) -> WriteFileResponse:
        """Write text to a file, creating its folders; a failure is ``success=False``."""
        request = checked(request, WriteFileRequest, "write_file")
        return await self.write_file_by_path(request.content, request.path)

    async def write_file_by_path(self, content: str, path: str) -> WriteFileResponse:
        """`write_file` with the content and path given directly."""
        kit = self._started()
        try:
            await kit.write_text(path, content)
        except RockError as exc:
            return WriteFileResponse(success=False, message=f"could not write {path}: {exc}")
        return WriteFileResponse(success=True, message=f"wrote {len(content)} characters to {path}")

    async def read_file(self, request: ReadFileRequest) -> ReadFileResponse:
        """A file's text; a missing file is `FileNotFound`, undecodable text `BadRequest`."""
        request = checked(request, ReadFileRequest, "read_file")
        data = await self._started().read_file(request.path)
        try:
            text = data.decode(request.encoding or "utf-8", request.errors or "strict")
        except (UnicodeDecodeError, LookupError) as exc:
            raise BadRequest(f"read_file: {request.path} cannot be read as text: {exc}") from None
        return ReadFileResponse(content=text)

    async def read_file_by_line_range(
        self,
        file_path: str,
        start_line: int | None = None,
        end_line: int | None = None,
        lines_per_request: int = 1000,
        session: str | None = None,
    ) -> ReadFileResponse:
        """Lines `start_line`..`end_line` (from 1, inclusive; None: to the end) of a text file,
        read `lines_per_request` lines at a time. `session` is accepted and unused."""
        first, last = plans.line_ranges(start_line, end_line, lines_per_request)
        if last is None:
            counted = await self._tool(["wc", "-l", file_path], f"count the lines of {file_path}")
            last = int(counted.split()[0])
        parts = [
            await self._tool(["sed", "-n", f"{a},{b}p", file_path], f"read {file_path}")
            for a, b in plans.chunks(first, last, lines_per_request)
        ]
        return ReadFileResponse(content="".join(parts))

    async def _tool(self, argv: list[str], what: str) -> str:
        result = await self._started().execute(argv)
        if result.exit_code != 0:
            raise CommandFailed(
                f"could not {what}: {result.stderr.strip()}",
                result=result,
                exit_code=result.exit_code,
            )
        return result.stdout

    async def upload(self, request: UploadRequest) -> UploadResponse:
        """Copy a local file into the sandbox; a failure is ``success=False``."""
        request = checked(request, UploadRequest, "upload")
        return await self.upload_by_path(
            request.source_path, request.target_path, request.upload_mode
        )

    async def upload_by_path(
        self, file_path: str | Path, target_path: str, upload_mode: UploadMode = UploadMode.AUTO
    ) -> UploadResponse:
        """`upload` with the paths given directly; every upload is streamed (no OSS)."""
        kit = self._started()
        source = Path(file_path)
        if upload_mode == UploadMode.OSS:
            return UploadResponse(success=False, message="upload_mode=oss: there is no OSS here")
        if not source.is_file():
            return UploadResponse(success=False, message=f"no such local file: {source}")
        try:
            await kit.upload(source, target_path)
        except RockError as exc:
            return UploadResponse(success=False, message=f"could not upload {source}: {exc}")
        return UploadResponse(
            success=True, message=f"uploaded {source} to {target_path}", file_name=source.name
        )

    def __repr__(self) -> str:
        return f"Sandbox(sandbox_id={self.sandbox_id}, image={self.config.image})"
