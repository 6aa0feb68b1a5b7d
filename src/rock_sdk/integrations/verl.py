"""A verl tool (`verl.tools.base_tool.BaseTool`) that runs the model's commands in sandboxes.

Selected by ``class_name: rock_sdk.integrations.verl.SandboxTool`` in a verl tool YAML; its
``config:`` is `ToolSettings` (see docs/integrations.md). Each tool instance (one trajectory's
use of the tool) leases a warm sandbox on `create`, runs a shell command or Python code on its
default session on `execute`, scores with a verifier command on `calc_reward`, and gives the
sandbox back on `release`.

Rules:
- One warm pool per (event loop, pool settings): every tool of the same settings in one verl
  worker shares it. It is opened on the first `create`, by a task of its own (verl calls the
  tool from many tasks, and a pool's cluster must be entered and left by the same task), and
  closed by `close_pools()` or, failing that, when the event loop ends (then the local agent
  removes what is left). asyncio only, as verl is.
- A released sandbox is deleted (the pool refills), never reused: no state leaks between
  trajectories.
- Bad config, bad parameters and unknown instance ids raise the kit's `BadRequest` /
  `NotFound` with the reason; a failing or timed-out command is not an error: the model sees
  its output and exit status.
"""

from __future__ import annotations

import asyncio
import math
import uuid
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse

from rock_sdk import (
    AlreadyExists,
    BadRequest,
    NotFound,
    Pool,
    RockError,
    Sandbox,
    SandboxConfig,
    StartGate,
    open_cluster,
)

from ._limiter_book import check_name, limiter_config
from ._ray_limiter import open_start_limiter

__all__ = ["SandboxTool", "ToolSettings", "close_pools"]


class ToolSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``config:`` of the tool in verl's YAML (verl's own ``type: native`` is accepted)."""

    type: str = "native"
    #: The sandboxes: any `rock_sdk.SandboxConfig` field (image, cpus, memory, network, ...).
    sandbox: SandboxConfig = msgspec.field(default_factory=SandboxConfig)
    #: Where sandboxes run: ``local`` or ``ssh://user@host`` addresses (`open_cluster`).
    hosts: tuple[str, ...] = ("local",)
    #: Warm sandboxes kept ready, and the most the pool grows to on misses.
    pool_min_size: int = 1
    pool_max_size: int | None = None
    #: Seconds one command (execute, setup or verifier) may run before it is interrupted.
    timeout: float = 30.0
    #: Run on `create` (e.g. installing the task); a failure fails the `create`.
    setup: str = ""
    #: The default verifier command of `calc_reward`; a `create` may give its own.
    verifier: str = ""
    #: How `calc_reward` scores: 1.0 when the verifier exits 0 (else 0.0), or the number the
    #: verifier prints on its last line.
    reward: Literal["exit_code", "stdout"] = "exit_code"
    #: The most characters of output the model sees (the end is kept).
    max_output: int = 10_000
    #: The function's name and which parameter it takes: ``command`` (shell) or ``code``.
    name: str = "run"
    language: Literal["bash", "python"] = "bash"
    #: Sandbox creates in flight at once across every verl worker of the Ray cluster, and
    #: creates begun per second (0: none), through the named limiter actor `start_limiter`
    #: (`rock_sdk.integrations.ray.open_start_limiter`; the worker must have joined Ray).
    start_limit: int = 0
    start_rate: float = 0.0
    start_limiter: str = "rock-starts"

    @classmethod
    def from_config(cls, config: Any) -> ToolSettings:
        """Validate verl's config dict; `BadRequest` names the offending key."""
        try:
            settings = msgspec.convert(dict(config or {}), cls, strict=False)
        except (msgspec.ValidationError, TypeError, ValueError) as exc:
            raise BadRequest(f"rock verl tool config: {exc}") from None
        if settings.type != "native":
            raise BadRequest(f"rock verl tool config: type must be 'native', got {settings.type!r}")
        if not settings.hosts:
            raise BadRequest("rock verl tool config: hosts is empty")
        if settings.pool_min_size < 0 or (settings.pool_max_size or 1) < max(
            1, settings.pool_min_size
        ):
            raise BadRequest(
                "rock verl tool config: need 0 <= pool_min_size <= pool_max_size and "
                f"pool_max_size >= 1, got {settings.pool_min_size} and {settings.pool_max_size}"
            )
        if not settings.timeout > 0 or settings.max_output < 1:
            raise BadRequest("rock verl tool config: timeout and max_output must be positive")
        if settings.start_limit or settings.start_rate:
            try:
                limiter_config(settings.start_limit or None, settings.start_rate or None)
                check_name(settings.start_limiter)
            except BadRequest as exc:
                raise BadRequest(f"rock verl tool config: {exc}") from None
        return settings

    def pool_key(self) -> bytes:
        """What tools sharing a pool have in common."""
        limits = (self.start_limit, self.start_rate, self.start_limiter)
        return msgspec.json.encode(
            (self.sandbox, self.hosts, self.pool_min_size, self.pool_max_size, limits)
        )

    def schema(self) -> OpenAIFunctionToolSchema:
        """The OpenAI function schema verl shows the model, when the YAML gives none."""
        argument, text = (
            ("code", "Python 3 source, run with python3 in the sandbox.")
            if self.language == "python"
            else ("command", "A bash command, run in the sandbox's persistent shell.")
        )
        return OpenAIFunctionToolSchema.model_validate(
            {
                "type": "function",
                "function": {
                    "name": self.name,
                    "description": "Run in an isolated Linux sandbox and return the output.",
                    "parameters": {
                        "type": "object",
                        "properties": {argument: {"type": "string", "description": text}},
                        "required": [argument],
                    },
                },
            }
        )


@asynccontextmanager
async def _start_gate(settings: ToolSettings) -> AsyncIterator[StartGate | None]:
    """The shared start limiter the settings ask for, or None."""
    if not (settings.start_limit or settings.start_rate):
        yield None
        return
    async with open_start_limiter(
        settings.start_limiter,
        max_starts=settings.start_limit or None,
        rate=settings.start_rate or None,
    ) as gate:
        yield gate


class _PoolHost:
    """One cluster and warm pool, opened and closed by a task of its own (see the rules)."""

    def __init__(self, settings: ToolSettings) -> None:
        self.settings = settings
        self._pool: Pool | None = None
        self._error: BaseException | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def pool(self) -> Pool:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        await self._ready.wait()
        if self._pool is None:
            if isinstance(self._error, RockError):
                raise self._error  # the cluster's own error (a host unreachable, ...)
            raise RockError(f"rock verl tool: the sandbox pool is not open: {self._error!r}")
        return self._pool

    async def _run(self) -> None:
        settings = self.settings
        try:
            async with (
                _start_gate(settings) as gate,
                open_cluster(list(settings.hosts), start_gate=gate) as cluster,
                cluster.open_pool(
                    settings.sandbox,
                    min_size=settings.pool_min_size,
                    max_size=settings.pool_max_size or max(1, settings.pool_min_size),
                ) as pool,
            ):
                self._pool = pool
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:  # reported to every caller of `pool()`
            self._error = exc
        finally:
            self._pool = None
            self._ready.set()

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.shield(self._task)


_hosts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[bytes, _PoolHost]] = (
    weakref.WeakKeyDictionary()
)


def _host(settings: ToolSettings) -> _PoolHost:
    hosts = _hosts.setdefault(asyncio.get_running_loop(), {})
    key = settings.pool_key()
    if key not in hosts:
        hosts[key] = _PoolHost(settings)
    return hosts[key]


async def close_pools() -> None:
    """Close every pool this event loop's tools opened (their sandboxes are deleted)."""
    hosts = _hosts.pop(asyncio.get_running_loop(), {})
    for host in hosts.values():
        await host.aclose()


@dataclass
class _Instance:
    sandbox: Sandbox
    verifier: str
    runs: int = 0


_CREATE_KEYS = frozenset({"files", "setup", "verifier"})


class SandboxTool(BaseTool):  # type: ignore[misc,unused-ignore]  # Any where verl is absent
    """verl's tool interface on a warm pool of sandboxes; see the module's rules."""

    def __init__(
        self, config: dict[str, Any], tool_schema: OpenAIFunctionToolSchema | None = None
    ) -> None:
        self.settings = ToolSettings.from_config(config)
        self._instances: dict[str, _Instance] = {}
        self._creating: set[str] = set()  # ids taken by a create still leasing its sandbox
        super().__init__(config, tool_schema or self.settings.schema())

    async def pool(self) -> Pool:
        """The warm pool this tool leases from (shared by tools of the same settings)."""
        return await _host(self.settings).pool()

    async def create(
        self, instance_id: str | None = None, **kwargs: Any
    ) -> tuple[str, ToolResponse]:
        """Lease a sandbox; `files` ({path: text}), `setup` and `verifier` may come as keywords
        or inside verl's ``create_kwargs``."""
        options = {**dict(kwargs.pop("create_kwargs", None) or {}), **kwargs}
        unknown = sorted(set(options) - _CREATE_KEYS)
        if unknown:
            raise BadRequest(
                f"rock verl tool: unknown create arguments {unknown}; "
                f"it takes {sorted(_CREATE_KEYS)}"
            )
        given_files = options.get("files") or {}
        if not isinstance(given_files, Mapping):
            raise BadRequest(
                "rock verl tool: files must be a mapping of sandbox path to content, "
                f"got {given_files!r}"
            )
        files = dict(given_files)
        instance_id = instance_id or uuid.uuid4().hex
        if instance_id in self._instances or instance_id in self._creating:
            raise AlreadyExists(f"rock verl tool: instance {instance_id!r} already exists")
        # Taken before the first await: a concurrent create of the same id would otherwise
        # lease a second sandbox and overwrite the first, which then is never released.
        self._creating.add(instance_id)
        try:
            pool = await self.pool()
            sandbox = await pool.acquire()
            try:
                for path, content in files.items():
                    await sandbox.write_file(str(path), content)
                setup = str(options.get("setup") or self.settings.setup)
                if setup:
                    await sandbox.arun(setup, timeout=self.settings.timeout, check=True)
            except BaseException:
                await asyncio.shield(pool.release(sandbox))
                raise
            verifier = str(options.get("verifier") or self.settings.verifier)
            self._instances[instance_id] = _Instance(sandbox, verifier)
        finally:
            self._creating.discard(instance_id)
        return instance_id, ToolResponse()

    def _instance(self, instance_id: str) -> _Instance:
        try:
            return self._instances[instance_id]
        except KeyError:
            raise NotFound(f"rock verl tool: no instance {instance_id!r}") from None

    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[ToolResponse, float, dict[str, Any]]:
        """Run ``command`` (bash) or ``code`` (Python); the model sees output and exit status."""
        instance = self._instance(instance_id)
        given = sorted(set(parameters or {}) & {"command", "code"})
        if len(given) != 1 or not isinstance(parameters[given[0]], str):
            raise BadRequest(
                "rock verl tool: execute takes exactly one of 'command' or 'code' (a string), "
                f"got {parameters!r}"
            )
        command = parameters["command"] if given == ["command"] else None
        if command is None:
            instance.runs += 1
            path = f"/tmp/rock_verl_{instance.runs}.py"
            await instance.sandbox.write_file(path, parameters["code"])
            command = f"python3 {path}"
        result = await instance.sandbox.arun(command, timeout=self.settings.timeout)
        text = result.output[-self.settings.max_output :]
        if result.timed_out:
            text += f"\n[timed out after {self.settings.timeout:g} s]"
        elif result.exit_code != 0:
            text += f"\n[exit code {result.exit_code}]"
        metrics = {"exit_code": result.exit_code, "timed_out": result.timed_out}
        return ToolResponse(text=text), 0.0, metrics

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        """Run the verifier: 1.0 if it exits 0, else 0.0 (or the number it prints last)."""
        instance = self._instance(instance_id)
        if not instance.verifier:
            raise BadRequest(
                "rock verl tool: no verifier: set `verifier` in the tool config or in create"
            )
        result = await instance.sandbox.arun(instance.verifier, timeout=self.settings.timeout)
        if self.settings.reward == "exit_code":
            return 1.0 if result.ok else 0.0
        lines = result.output.strip().splitlines()
        try:
            reward = float(lines[-1])
            if not math.isfinite(reward):  # float() reads "nan" and "inf": no reward to train on
                raise ValueError(reward)
            return reward
        except (IndexError, ValueError):
            raise BadRequest(
                f"rock verl tool: the verifier printed no number on its last line "
                f"(exit code {result.exit_code}): {result.output[-200:]!r}"
            ) from None

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        """Give the sandbox back to the pool (it is deleted; the pool refills)."""
        instance = self._instances.pop(instance_id, None)
        if instance is None:
            raise NotFound(f"rock verl tool: no instance {instance_id!r}")
        pool = await self.pool()
        await asyncio.shield(pool.release(instance.sandbox))
