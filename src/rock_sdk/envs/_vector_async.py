"""`AsyncVectorEnv`: every environment's async twin awaited at once, under anyio.

Rules:
- It runs under asyncio and trio alike.
- Environments that override an async twin (those that wait on I/O) each get a task, so
  their waits overlap. Environments that keep the default twins never wait, so a task would
  buy nothing: they are awaited in turn inside the calling task, which is several times
  faster for pure-Python games.
- Environments in sandboxes (`RemoteEnv`, in the caller's loop) share an env server per
  sandbox, up to ``envs_per_server`` envs each; a step or reset sends each server's calls as
  one batch, in one task per server (`_vector_batch`), whatever the vector's other envs do.
  ``envs_per_server=1`` gives every env a server of its own (one round trip per env).
- When several environments fail in one call, every call still finishes and the error of
  the lowest index is raised (not an exception group), so callers can catch the kit's
  errors directly.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.abc

from ._autoreset import AutoresetMode, Plan, Transition, arun_plan
from ._env import Env
from ._env_server import EnvServer, EnvServers
from ._remote import RemoteEnv
from ._vector import SeedArg, VectorEnv, VectorReset, VectorStep
from ._vector_batch import BatchJob, run_batched

__all__ = ["DEFAULT_ENVS_PER_SERVER", "AsyncVectorEnv"]

#: How many of a vector's envs in one sandbox share an env server by default.
DEFAULT_ENVS_PER_SERVER = 16

T = TypeVar("T")


class AsyncVectorEnv(VectorEnv):
    """Several environments stepped concurrently through `Env.astep` / `Env.areset`.

    Use ``async with AsyncVectorEnv("game:Wordle-v0", 64) as envs:`` to close them on exit;
    see `VectorEnv` for seeds and indices and `AutoresetMode` for autoreset. Envs in
    sandboxes share an env server per sandbox, `envs_per_server` at most (see the module).
    """

    def __init__(
        self,
        env_ids: str | Sequence[str],
        num_envs: int | None = None,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
        envs_per_server: int = DEFAULT_ENVS_PER_SERVER,
        **env_kwargs: Any,
    ) -> None:
        servers = EnvServers(envs_per_server)
        super().__init__(env_ids, num_envs, autoreset_mode=autoreset_mode, **env_kwargs)
        #: How many envs in one sandbox share an env server.
        self.envs_per_server = envs_per_server
        for env in self.envs:
            if isinstance(env, RemoteEnv) and not env._own_loop:
                env._share_servers(servers)

    @functools.cached_property
    def _waits(self) -> list[bool]:
        """Per environment: whether it overrides an async twin (and so gets a task)."""
        return [_overrides_a_twin(env) for env in self.envs]

    async def areset(
        self, seed: SeedArg = None, indices: Sequence[int] | None = None
    ) -> VectorReset:
        """Reset every environment (or those at `indices`) concurrently."""
        plans = [
            (self._slots[index].reset(one_seed), index)
            for index, one_seed in self._reset_calls(seed, indices)
        ]
        return self._reset_result(await self._run(plans))

    async def astep(
        self, actions: Sequence[str], indices: Sequence[int] | None = None
    ) -> VectorStep:
        """Step every environment (or those at `indices`) concurrently, one action each."""
        plans = [
            (self._slots[index].step(action), index)
            for index, action in self._step_calls(actions, indices)
        ]
        return self._step_result(await self._run(plans))

    async def _run(self, plans: Sequence[tuple[Plan, int]]) -> list[Transition]:
        """Carry out each (plan, env index): batched per env server where envs share one."""
        batches: dict[EnvServer, list[BatchJob]] = {}
        alone: list[tuple[int, Callable[[], Awaitable[Transition]], int]] = []
        for position, (plan, index) in enumerate(plans):
            env = self.envs[index]
            if isinstance(env, RemoteEnv) and (server := env._batch_server()) is not None:
                batches.setdefault(server, []).append((position, plan, env))
            else:
                alone.append((position, partial(arun_plan, plan, env), index))
        results: dict[int, Transition] = {}
        errors: dict[int, Exception] = {}
        async with anyio.create_task_group() as group:
            for server, jobs in batches.items():
                group.start_soon(run_batched, server, jobs, results, errors)
            await self._gather(group, alone, results, errors)
        return _ordered(len(plans), results, errors)

    async def aclose(self) -> None:
        """Close every environment, concurrently."""
        jobs = [(index, env.aclose, index) for index, env in enumerate(self.envs)]
        results: dict[int, None] = {}
        errors: dict[int, Exception] = {}
        async with anyio.create_task_group() as group:
            await self._gather(group, jobs, results, errors)
        _ordered(len(jobs), results, errors)

    async def _gather(
        self,
        group: anyio.abc.TaskGroup,
        jobs: Sequence[tuple[int, Callable[[], Awaitable[T]], int]],
        results: dict[int, T],
        errors: dict[int, Exception],
    ) -> None:
        """Await each (position, job, env index): in a task of `group` if the env waits."""

        async def run(position: int, job: Callable[[], Awaitable[T]]) -> None:
            try:
                results[position] = await job()
            except Exception as exc:  # gathered and re-raised by `_ordered`, once all are done
                errors[position] = exc

        for position, job, index in jobs:
            if self._waits[index]:
                group.start_soon(run, position, job)
            else:
                await run(position, job)


def _ordered(count: int, results: dict[int, T], errors: dict[int, Exception]) -> list[T]:
    """The results by position, or the error of the lowest failing position."""
    if errors:
        raise errors[min(errors)]
    return [results[position] for position in range(count)]


def _overrides_a_twin(env: Env) -> bool:
    """Whether `env` has its own async twin (and so may wait inside it)."""
    cls = type(env)
    return any(
        getattr(cls, name) is not getattr(Env, name) for name in ("areset", "astep", "aclose")
    )
