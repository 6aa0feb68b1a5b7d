"""Task environments: an agent acts with shell commands in a sandbox, a verifier scores it.

A `TaskSpec` says what a task is: the image, files and setup commands that prepare a
sandbox, the instruction the agent reads, the verifier command that scores the result, and
the limits. A `TaskEnv` plays it (ROCK's Bash protocol; actions in `_task_format`):

- ``reset()`` gives back the previous sandbox, takes a fresh one, writes `files`, uploads
  `uploads`, opens the agent's shell session (cwd `workdir`) and runs each `setup` command
  there in order (so a ``cd`` or ``export`` in setup carries over); a setup command that
  fails raises `SandboxFailed` and the sandbox is given back. The observation is the
  instruction followed by the action format; info holds ``turn``, ``max_turns``,
  ``sandbox_id`` and ``outcome`` ("reset").
- ``<bash>CMD</bash>``: CMD runs in the agent's persistent session (cwd, variables and
  functions carry over) for at most `command_timeout` seconds; reward 0.0. The observation is
  the command's output (stdout and stderr interleaved) exactly, at most `output_limit` bytes,
  followed by a bracketed note for anything noteworthy: ``[output truncated: ...]``,
  ``[timed out after N s]``, ``[exit code N]``, ``[the shell exited; a new one was
  started]``. info adds ``exit_code``, ``timed_out``, ``output_truncated``.
- ``<submit/>`` or ``<submit>ANSWER</submit>``: the verifier runs; terminated, with the
  verifier's score as the reward (see `_task_format` for ``ROCK_SCORE=P/Q``).
- No tag: a format error, reward -0.1, terminated (no verifier run).
- The turn limit: when the `max_turns`-th action is a command, the verifier runs on the
  sandbox as it is; truncated, with its score as the reward (the task's partial credit).
- The verifier runs in a fresh session (cwd `workdir`) after `verifier_files` are written
  (so the agent never sees them), with ``ROCK_ANSWER_FILE`` naming a file that holds the
  submitted answer (empty without one). info adds ``score`` and ``verifier`` (its
  ``exit_code``, ``timed_out``, ``output``, and ``passed``/``total`` when it counted).
- When an episode ends, its sandbox is given back at once (deleted, with the default
  factory); ``step`` then raises `BadRequest` until the next ``reset``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from rock_core import BadRequest, Cluster, SandboxFailed

from .._config import SandboxConfig, parse_size
from .._results import CommandResult
from .._sandbox import Sandbox
from ._env import ResetResult, StepResult
from ._game import FORMAT_ERROR_REWARD
from ._sandbox_env import SandboxEnv, SandboxSource
from ._task_format import Bash, Score, parse_action, score_verifier

__all__ = ["ANSWER_FILE", "TaskEnv", "TaskSpec"]

#: Where the submitted answer is written for the verifier (also in ``$ROCK_ANSWER_FILE``).
ANSWER_FILE = "/tmp/rock-task/answer"

#: How much of the verifier's output is kept (and searched for ``ROCK_SCORE=``).
VERIFIER_OUTPUT_LIMIT = 1 << 20

_AGENT_SESSION = "agent"
_VERIFIER_SESSION = "verifier"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

ACTION_HELP = (
    "Act with one shell command per turn, written as <bash>COMMAND</bash>; it runs in a "
    "persistent shell (the working directory and variables carry over) and you see its "
    "output. When you are done, answer <submit/>, or <submit>ANSWER</submit> to hand in an "
    "answer."
)


class TaskSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a task is: the sandbox, its preparation, the instruction, the verifier, the limits.

    `files` maps sandbox paths to text written before setup; `uploads` maps sandbox paths to
    local files or folders uploaded before setup; `verifier_files` are written just before
    the verifier runs. `env` and `workdir` set the sandbox's environment and working folder.
    """

    instruction: str
    verifier: str
    name: str = "task"
    image: str = "python:3.11"
    setup: list[str] = []
    files: dict[str, str] = {}
    uploads: dict[str, str] = {}
    verifier_files: dict[str, str] = {}
    workdir: str = ""
    env: dict[str, str] = {}
    max_turns: int = 20
    output_limit: int = 8192
    command_timeout: float = 60.0
    setup_timeout: float = 600.0
    verifier_timeout: float = 600.0
    cpus: float = 0.5
    memory: str = "512m"
    network: bool = False

    def check(self) -> TaskSpec:
        """Return the spec if every field makes sense; else `BadRequest` naming what does not."""
        problems = []
        if not self.instruction.strip():
            problems.append("instruction is empty")
        if not self.verifier.strip():
            problems.append("verifier is empty")
        if not self.image:
            problems.append("image is empty")
        if not _NAME.match(self.name):
            problems.append(f"name {self.name!r} is not letters, digits, '.', '_' and '-'")
        if self.max_turns < 1:
            problems.append(f"max_turns must be at least 1, got {self.max_turns}")
        if self.output_limit < 1:
            problems.append(f"output_limit must be at least 1 byte, got {self.output_limit}")
        for field in ("command_timeout", "setup_timeout", "verifier_timeout", "cpus"):
            if not getattr(self, field) > 0:
                problems.append(f"{field} must be positive, got {getattr(self, field)!r}")
        for field in ("files", "uploads", "verifier_files"):
            for path in getattr(self, field):
                if not path.startswith("/"):
                    problems.append(f"{field} path {path!r} is not absolute")
        if self.workdir and not self.workdir.startswith("/"):
            problems.append(f"workdir {self.workdir!r} is not absolute")
        try:
            parse_size(self.memory)
        except BadRequest as exc:
            problems.append(str(exc))
        if problems:
            raise BadRequest(f"invalid task spec {self.name!r}: {'; '.join(problems)}")
        return self

    @classmethod
    def coerce(cls, task: TaskSpec | Mapping[str, Any], **overrides: Any) -> TaskSpec:
        """A checked spec from a spec or a mapping of its fields, with `overrides` applied."""
        try:
            if isinstance(task, Mapping):
                task = msgspec.convert(dict(task), cls)
            if overrides:
                task = msgspec.convert({**msgspec.structs.asdict(task), **overrides}, cls)
        except msgspec.ValidationError as exc:
            raise BadRequest(f"invalid task spec: {exc}") from exc
        if not isinstance(task, cls):
            raise BadRequest(f"a task is a TaskSpec or a mapping of its fields, got {task!r}")
        return task.check()

    def sandbox_config(self) -> SandboxConfig:
        """The sandbox each episode runs in."""
        return SandboxConfig(
            image=self.image,
            cpus=self.cpus,
            memory=self.memory,
            network=self.network,
            env=dict(self.env),
            workdir=self.workdir,
        )


class TaskEnv(SandboxEnv):
    """A `TaskSpec` played in a fresh sandbox per episode; see the module docstring.

    `sandbox` is a `SandboxFactory` (a warm pool, say) or a `SandboxConfig` replacing the
    task's own; with `cluster`, sandboxes are made there and the env lives in the caller's
    event loop (async twins only); with neither, the env runs its own loop and local agent,
    so the synchronous API works. Keyword `overrides` replace fields of the task
    (``TaskEnv(task, max_turns=5)``).
    """

    def __init__(
        self,
        task: TaskSpec | Mapping[str, Any],
        *,
        sandbox: SandboxSource = None,
        cluster: Cluster | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        #: The task played.
        self.task = TaskSpec.coerce(task, **overrides)
        super().__init__(
            sandbox=sandbox,
            cluster=cluster,
            config=self.task.sandbox_config(),
            borrow=False,
            render_mode=render_mode,
        )
        self._sandbox: Sandbox | None = None
        self._session = _AGENT_SESSION
        self._sessions = 0
        self._turn = 0
        self._running = False
        self._last_output = ""

    @property
    def sandbox(self) -> Sandbox | None:
        """The sandbox of the episode in progress (None between episodes)."""
        return self._sandbox

    @property
    def turn(self) -> int:
        """Actions taken in the current episode."""
        return self._turn

    def render(self) -> str | None:
        """The last command's observation when ``render_mode="ansi"``, else None."""
        return self._last_output if self.render_mode == "ansi" else None

    def _holds_sandbox(self) -> bool:
        return self._sandbox is not None

    # ---- episodes ------------------------------------------------------------------------

    async def _areset(self, seed: int | None, options: dict[str, Any] | None) -> ResetResult:
        self._reseed(seed)
        self._running = False
        await self._give_back()
        assert self.factory is not None
        sandbox = await self.factory.acquire()
        self._sandbox = sandbox
        try:
            await self._prepare(sandbox)
        except BaseException:
            await self._give_back()
            raise
        self._turn = 0
        self._running = True
        self._last_output = ""
        observation = (
            f"{self.task.instruction.rstrip()}\n\n{ACTION_HELP} "
            f"You have {self.task.max_turns} turns."
        )
        return observation, self._info("reset")

    async def _prepare(self, sandbox: Sandbox) -> None:
        task = self.task
        for path, text in task.files.items():
            await sandbox.write_file(path, text)
        for path, local in task.uploads.items():
            await sandbox.upload(local, path)
        self._sessions = 0
        await self._new_session(sandbox)
        for number, command in enumerate(task.setup, 1):
            result = await sandbox.arun(command, self._session, timeout=task.setup_timeout)
            if not result.ok:
                why = "timed out" if result.timed_out else f"exited {result.exit_code}"
                raise SandboxFailed(
                    f"task {task.name!r}: setup command {number} ({command!r}) {why}: "
                    f"{result.output.strip()[-2000:]}"
                )

    async def _new_session(self, sandbox: Sandbox) -> None:
        self._sessions += 1
        self._session = (
            _AGENT_SESSION if self._sessions == 1 else f"{_AGENT_SESSION}-{self._sessions}"
        )
        await sandbox.create_session(self._session, cwd=self.task.workdir)

    async def _astep(self, action: str) -> StepResult:
        name = self.task.name
        if not self._running or self._sandbox is None:
            raise BadRequest(f"task {name!r}: no episode in progress; call reset() before step()")
        if not isinstance(action, str):
            raise BadRequest(f"task {name!r}: an action is a string, got {type(action).__name__}")
        self._turn += 1
        parsed = parse_action(action)
        if parsed is None:
            await self._end()
            observation = (
                f"At turn {self._turn}, your action had neither <bash>COMMAND</bash> nor "
                f"<submit/>. {ACTION_HELP}"
            )
            return observation, FORMAT_ERROR_REWARD, True, False, self._info("format_error")
        if not isinstance(parsed, Bash):
            score, info = await self._verify(parsed.answer or "", "submitted")
            observation = f"You submitted at turn {self._turn}. {_verdict(score)}"
            return observation, score.score, True, False, info
        observation, info = await self._run(self._sandbox, parsed.command)
        self._last_output = observation
        if self._turn < self.task.max_turns:
            return observation, 0.0, False, False, info
        score, verdict = await self._verify("", "truncated")
        observation += (
            f"\nYou have reached the maximum number of turns ({self._turn}). {_verdict(score)}"
        )
        return observation, score.score, False, True, {**verdict, **_command_info(info)}

    async def _run(self, sandbox: Sandbox, command: str) -> tuple[str, dict[str, Any]]:
        task = self.task
        result = await sandbox.arun(
            command, self._session, timeout=task.command_timeout, output_limit=task.output_limit
        )
        notes = []
        if result.truncated:
            notes.append(
                f"[output truncated: the first {len(result.output_bytes)} of "
                f"{result.total_bytes} bytes are shown; all of it is in {result.output_path}]"
            )
        if result.timed_out:
            notes.append(f"[timed out after {task.command_timeout:g} s]")
        elif result.exit_code not in (0, None):
            notes.append(f"[exit code {result.exit_code}]")
        if result.session_closed:
            notes.append("[the shell exited; a new one was started]")
            await self._new_session(sandbox)
        observation = result.output
        if notes:
            observation += "" if not observation or observation.endswith("\n") else "\n"
            observation += "\n".join(notes)
        return observation, {**self._info("command"), **_result_info(result)}

    async def _verify(self, answer: str, outcome: str) -> tuple[Score, dict[str, Any]]:
        sandbox = self._sandbox
        assert sandbox is not None
        task = self.task
        try:
            await sandbox.write_file(ANSWER_FILE, answer)
            for path, text in task.verifier_files.items():
                await sandbox.write_file(path, text)
            session = f"{_VERIFIER_SESSION}-{self._turn}"
            await sandbox.create_session(
                session, cwd=task.workdir, env={"ROCK_ANSWER_FILE": ANSWER_FILE}
            )
            result = await sandbox.arun(
                task.verifier,
                session,
                timeout=task.verifier_timeout,
                output_limit=VERIFIER_OUTPUT_LIMIT,
            )
        finally:
            info = self._info(outcome)
            await self._end()
        score = score_verifier(result.output, result.exit_code, result.timed_out)
        verifier: dict[str, Any] = {
            "exit_code": result.exit_code,
            "timed_out": result.timed_out,
            "output": result.output,
        }
        if score.total is not None:
            verifier["passed"], verifier["total"] = score.passed, score.total
        return score, {**info, "score": score.score, "verifier": verifier}

    async def _end(self) -> None:
        self._running = False
        await self._give_back()

    async def _give_back(self) -> None:
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            assert self.factory is not None
            await self.factory.release(sandbox)

    async def _aclose(self) -> None:
        self._running = False
        await self._give_back()

    def _info(self, outcome: str) -> dict[str, Any]:
        return {
            "turn": self._turn,
            "max_turns": self.task.max_turns,
            "outcome": outcome,
            "sandbox_id": self._sandbox.sandbox_id if self._sandbox is not None else None,
        }

    def __repr__(self) -> str:
        return f"<TaskEnv {self.task.name!r} turn {self._turn}>"


def _result_info(result: CommandResult) -> dict[str, Any]:
    return {
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "output_truncated": result.truncated,
    }


def _command_info(info: dict[str, Any]) -> dict[str, Any]:
    return {key: info[key] for key in ("exit_code", "timed_out", "output_truncated")}


def _verdict(score: Score) -> str:
    if score.total is not None:
        return (
            f"The verifier scored {score.score:.3g} "
            f"({score.passed:g} of {score.total:g} checks passed)."
        )
    return f"The verifier scored {score.score:g}."
