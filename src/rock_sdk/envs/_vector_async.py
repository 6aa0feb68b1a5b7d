"""`AsyncVectorEnv`: every environment's async twin awaited at once, under anyio.

Rules:
- It runs under asyncio and trio alike.
- Environments that override an async twin (those that wait on I/O) each get a task, so
  their waits overlap. Environments that keep the default twins never wait, so a task would
  buy nothing: they are awaited in turn inside the calling task, which is several times
  faster for pure-Python games.
- When several environments fail in one call, every call still finishes and the error of
  the lowest index is raised (not an exception group), so callers can catch the kit's
  errors directly.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

import anyio

from ._autoreset import arun_plan
from ._env import Env
from ._vector import SeedArg, VectorEnv, VectorReset, VectorStep

__all__ = ["AsyncVectorEnv"]

T = TypeVar("T")


class AsyncVectorEnv(VectorEnv):
    """Several environments stepped concurrently through `Env.astep` / `Env.areset`.

    Use ``async with AsyncVectorEnv("game:Wordle-v0", 64) as envs:`` to close them on exit;
    see `VectorEnv` for seeds and indices and `AutoresetMode` for autoreset.
    """

    @functools.cached_property
    def _waits(self) -> list[bool]:
        """Per environment: whether it overrides an async twin (and so gets a task)."""
        return [_overrides_a_twin(env) for env in self.envs]

    async def areset(
        self, seed: SeedArg = None, indices: Sequence[int] | None = None
    ) -> VectorReset:
        """Reset every environment (or those at `indices`) concurrently."""
        jobs = [
            (partial(arun_plan, self._slots[index].reset(one_seed), self.envs[index]), index)
            for index, one_seed in self._reset_calls(seed, indices)
        ]
        return self._reset_result(await self._gather(jobs))

    async def astep(
        self, actions: Sequence[str], indices: Sequence[int] | None = None
    ) -> VectorStep:
        """Step every environment (or those at `indices`) concurrently, one action each."""
        jobs = [
            (partial(arun_plan, self._slots[index].step(action), self.envs[index]), index)
            for index, action in self._step_calls(actions, indices)
        ]
        return self._step_result(await self._gather(jobs))

    async def aclose(self) -> None:
        """Close every environment, concurrently."""
        await self._gather([(env.aclose, index) for index, env in enumerate(self.envs)])

    async def _gather(self, jobs: Sequence[tuple[Callable[[], Awaitable[T]], int]]) -> list[T]:
        """Await each (job, env index); results in order, or the lowest position's error."""
        results: dict[int, T] = {}
        errors: dict[int, Exception] = {}

        async def run(position: int, job: Callable[[], Awaitable[T]]) -> None:
            try:
                results[position] = await job()
            except Exception as exc:  # gathered and re-raised below, once every job is done
                errors[position] = exc

        async with anyio.create_task_group() as group:
            for position, (job, index) in enumerate(jobs):
                if self._waits[index]:
                    group.start_soon(run, position, job)
                else:
                    await run(position, job)
        if errors:
            raise errors[min(errors)]
        return [results[position] for position in range(len(jobs))]


def _overrides_a_twin(env: Env) -> bool:
    """Whether `env` has its own async twin (and so may wait inside it)."""
    cls = type(env)
    return any(
        getattr(cls, name) is not getattr(Env, name) for name in ("areset", "astep", "aclose")
    )
