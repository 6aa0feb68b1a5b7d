"""mini-swe-agent on the kit: an environment for its ``environment_class`` setting.

    environment:
      environment_class: rock_sdk.integrations.minisweagent.RockEnvironment
      image: python:3.11
      cwd: /testbed

mini-swe-agent resolves that dotted path itself (``get_environment``) and passes the rest of
the section as keywords (`RockEnvironmentConfig`). Each environment owns one sandbox and one
persistent shell session in it; `execute` answers with the dict mini-swe-agent's own
environments return, and `cleanup` (also on garbage collection, as theirs) deletes the sandbox.

Rules:
- mini-swe-agent is synchronous and the SDK is async: each environment runs its cluster,
  sandbox and session on an event loop of its own, in a daemon thread, through an anyio
  `BlockingPortal`; every public method is a blocking call into it, and `cleanup` ends it.
- One session for all actions, so ``cd`` and variables persist between them. A `cwd` given
  to `execute` is entered before the command and stays the session's directory. An action
  that ends the shell (``exit``) is answered normally; the next one gets a fresh session in
  the configured `cwd`.
- A command that runs out of time, or a sandbox that fails under it, is an answer, not an
  exception (``returncode`` -1 and ``exception_info``), as mini-swe-agent's environments do,
  so the agent shows it to the model and goes on. Bad input (an action that is not a dict
  with a string command, a bad timeout or config) raises `BadRequest`.
- The submit sentinel on the first line of a successful command's output raises
  mini-swe-agent's `Submitted`, exactly where its own environments do.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import subprocess
from types import TracebackType
from typing import Any

import anyio
import msgspec
from minisweagent.exceptions import Submitted
from minisweagent.utils.serialize import recursive_merge

from rock_sdk import (
    BadRequest,
    CommandResult,
    LoopThread,
    RockError,
    Sandbox,
    SandboxConfig,
    SessionNotFound,
    open_cluster,
)

__all__ = ["RockEnvironment", "RockEnvironmentConfig"]


#: The first output line by which mini-swe-agent's agent says it is done (its environments'
#: contract: the rest of the output is the submission).
_SUBMIT = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
_SESSION = "mini-swe-agent"
_UNAME = ("system", "node", "release", "version", "machine")
#: Keys of mini-swe-agent's `DockerEnvironmentConfig` that mean nothing for a sandbox session.
_DOCKER_ONLY = ("interpreter", "executable", "run_args", "container_timeout", "pull_timeout")


class RockEnvironmentConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The environment's settings: the keys of mini-swe-agent's ``environment`` section.

    `image`, `cwd`, `env`, `forward_env` (host variables copied in when set) and `timeout`
    (seconds per action) mean what they mean for its `DockerEnvironment`; `cpus`, `memory` and
    `network` are the sandbox's limits (`SandboxConfig`; no network by default); `hosts` is
    the cluster (``"local"``, or addresses such as ``"ssh://user@host"``); `output_limit` is
    the bytes of an action's output kept (the rest is noted in the output); `startup` is a
    command run in each new session before its first action (``source /root/.bashrc`` for
    images that set up their environment there: the session's shell reads no rc file).

    `DockerEnvironment`'s own keys (`interpreter`, `executable`, `run_args`,
    `container_timeout`, `pull_timeout`) are accepted and ignored, so its configs (such as
    mini-swe-agent's SWE-bench one) work with only `environment_class` changed.
    """

    image: str = "python:3.11"
    cwd: str = "/"
    env: dict[str, str] = {}
    forward_env: list[str] = []
    timeout: int | float = 30
    cpus: float = 1.0
    memory: int | str = "1g"
    network: bool = False
    hosts: list[str] = msgspec.field(default_factory=lambda: ["local"])
    output_limit: int = 1 << 20
    startup: str = ""


class RockEnvironment:
    """A mini-swe-agent environment whose actions run in a sandbox's persistent session."""

    def __init__(self, **kwargs: Any) -> None:
        self.config = _config(kwargs)
        self.sandbox_id = ""
        self._session_open = False
        self._uname: dict[str, str] = {}
        spec = SandboxConfig(
            image=self.config.image,
            cpus=self.config.cpus,
            memory=self.config.memory,
            network=self.config.network,
        )
        spec.to_spec()  # a bad image name or limit fails here, before a thread or an agent
        self._loop: LoopThread | None = LoopThread(
            "rock-mini-swe-agent",
            closed="this mini-swe-agent environment is closed (cleanup() was called)",
            on_own_loop="the environment's blocking methods cannot run on its own loop",
        )
        try:
            cluster = self._loop.enter(open_cluster(self.config.hosts))
            self._sandbox = Sandbox(spec, cluster=cluster)
            self._loop.call(self._sandbox.start)
            self.sandbox_id = self._sandbox.sandbox_id
            self._loop.call(self._open_session)
            names = self._loop.call(self._run, "uname -s; uname -n; uname -r; uname -v; uname -m")
            self._uname = dict(zip(_UNAME, names.output.splitlines(), strict=False))
        except BaseException:
            self.cleanup()
            raise

    # ------------------------------------------------------------------ mini-swe-agent's API

    def execute(
        self, action: dict[str, Any], cwd: str = "", *, timeout: int | float | None = None
    ) -> dict[str, Any]:
        """Run ``action["command"]`` in the session; the dict mini-swe-agent's agent expects."""
        command = _command(action)
        limit = self.config.timeout if timeout is None else _timeout(timeout, "timeout")
        if not isinstance(cwd, str):
            raise BadRequest(f"cwd must be a string, got {cwd!r}")
        # A group, so that no line of a multi-line command runs where `cd` failed.
        script = command
        if cwd:  # an empty group `{ }` is a syntax error: an empty command only changes folder
            script = f"cd -- {shlex.quote(cwd)}"
            script += f" && {{\n{command}\n}}" if command.strip() else ""
        try:
            result = self._require_loop().call(self._run, script, limit)
        except RockError as exc:
            if isinstance(exc, BadRequest):
                raise
            output = _failure("", exc, type(exc).__name__)
        else:
            output = self._answer(result, command, limit)
        self._check_finished(output)
        return output

    def get_template_vars(self, **kwargs: Any) -> dict[str, Any]:
        """The config, the sandbox's ``uname`` (system, release, machine...) and `kwargs`."""
        merged: dict[str, Any] = recursive_merge(
            msgspec.structs.asdict(self.config), self._uname, kwargs
        )
        return merged

    def serialize(self) -> dict[str, Any]:
        """The environment's part of a saved trajectory, in mini-swe-agent's layout."""
        kind = f"{type(self).__module__}.{type(self).__qualname__}"
        config = msgspec.to_builtins(self.config)
        return {"info": {"config": {"environment": config, "environment_type": kind}}}

    def cleanup(self) -> None:
        """Delete the sandbox and end the environment's loop; later calls do nothing."""
        loop, self._loop = getattr(self, "_loop", None), None
        if loop is None:
            return
        try:
            if self.sandbox_id:
                with contextlib.suppress(RockError):  # the cluster's exit deletes it anyway
                    loop.call(self._sandbox.delete)
        finally:
            loop.stop()

    def __enter__(self) -> RockEnvironment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.cleanup()

    # ------------------------------------------------------------------ inside the loop

    async def _open_session(self) -> None:
        env = {k: os.environ[k] for k in self.config.forward_env if k in os.environ}
        env |= self.config.env
        await self._sandbox.create_session(_SESSION, env=env, cwd=self.config.cwd)
        try:
            if self.config.startup:
                await self._sandbox.arun(
                    self.config.startup, _SESSION, timeout=self.config.timeout, check=True
                )
        except BaseException:  # a session without its set-up is not used: the next try is anew
            with anyio.CancelScope(shield=True), contextlib.suppress(RockError):
                await self._sandbox.close_session(_SESSION)
            raise
        self._session_open = True

    async def _run(self, script: str, timeout: float = 30) -> CommandResult:
        if not self._session_open:
            await self._open_session()
        try:
            result = await self._sandbox.arun(
                script, _SESSION, timeout=timeout, output_limit=self.config.output_limit
            )
        except SessionNotFound:
            self._session_open = False
            raise
        if result.session_closed:
            self._session_open = False
        return result

    # ------------------------------------------------------------------ answers

    def _answer(self, result: CommandResult, command: str, limit: int | float) -> dict[str, Any]:
        output = result.output
        if result.truncated:
            output += (
                f"\n[output truncated: {result.total_bytes} bytes in all, kept in the sandbox"
                f" at {result.output_path}]\n"
            )
        if result.timed_out:
            timeout = subprocess.TimeoutExpired(command, limit, output=output)
            return _failure(output, timeout, "TimeoutExpired")
        code = -1 if result.exit_code is None else result.exit_code
        return {"output": output, "returncode": code, "exception_info": ""}

    def _check_finished(self, output: dict[str, Any]) -> None:
        first, _, rest = output["output"].lstrip().partition("\n")
        if output["returncode"] == 0 and first.strip() == _SUBMIT:
            raise Submitted(
                {
                    "role": "exit",
                    "content": rest,
                    "extra": {"exit_status": "Submitted", "submission": rest},
                }
            )

    def _require_loop(self) -> LoopThread:
        if self._loop is None:
            raise BadRequest("this mini-swe-agent environment is closed (cleanup() was called)")
        return self._loop


def _config(kwargs: dict[str, Any]) -> RockEnvironmentConfig:
    values = {k: v for k, v in kwargs.items() if k not in _DOCKER_ONLY}
    if isinstance(values.get("hosts"), str):
        values["hosts"] = [values["hosts"]]
    try:
        config = msgspec.convert(values, RockEnvironmentConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"mini-swe-agent environment config: {exc}") from None
    _timeout(config.timeout, "config timeout")
    if not config.hosts:
        raise BadRequest("mini-swe-agent environment config: hosts is empty; use ['local']")
    if config.output_limit <= 0:
        raise BadRequest(f"output_limit must be positive, got {config.output_limit}")
    return config


def _command(action: object) -> str:
    if not isinstance(action, dict):
        raise BadRequest(f"an action is a dict with a 'command', got {action!r}")
    command = action.get("command", "")
    if not isinstance(command, str):
        raise BadRequest(f"an action's command must be a string, got {command!r}")
    return command


def _timeout(value: object, what: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{what} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise BadRequest(f"{what} must be a positive number of seconds, got {value!r}")
    return value


def _failure(output: str, exc: BaseException, kind: str) -> dict[str, Any]:
    """An action that did not complete, in mini-swe-agent's own form for it."""
    return {
        "output": output,
        "returncode": -1,
        "exception_info": f"An error occurred while executing the command: {exc}",
        "extra": {"exception_type": kind, "exception": str(exc)},
    }
