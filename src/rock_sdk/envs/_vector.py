"""What every vector env shares: how it is built, seeded, and addressed by index.

Rules:
- A vector env is built from a list of ids, or from one id and ``num_envs``; extra keyword
  arguments go to every environment's `make` (so ``sandbox=`` and ``cluster=`` work, and
  ``hub:NAME`` ids).
- ``reset(seed=s)`` seeds environment ``i`` with ``s + i`` (``i`` its index in the vector,
  also when only some indices are reset); a list gives one seed per reset environment.
- ``step(actions, indices=None)`` steps every environment, or only those at ``indices``
  (one action each, in that order); results come back in the same order.
- Results are plain lists: observations ``list[str]``, rewards ``list[float]``, terminated
  and truncated ``list[bool]``, infos ``list[dict]``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from types import TracebackType
from typing import Any, ClassVar, Self

from rock_core import BadRequest

from ._autoreset import AutoresetMode, Slot, Transition
from ._env import Env
from ._make import build, resolve
from ._registry import EnvSpec

__all__ = ["SeedArg", "VectorEnv", "VectorReset", "VectorStep"]

#: Observations and infos of the environments reset.
VectorReset = tuple[list[str], list[dict[str, Any]]]

#: Observations, rewards, terminated and truncated flags, and infos of the envs stepped.
VectorStep = tuple[list[str], list[float], list[bool], list[bool], list[dict[str, Any]]]

#: A base seed (environment ``i`` gets ``seed + i``), one seed per environment, or None.
SeedArg = int | Sequence[int | None] | None


class VectorEnv:
    """Shared construction and argument checks of the vector envs (not used directly)."""

    #: Whether the environments live in this process (built here into `envs`).
    _in_process: ClassVar[bool] = True

    def __init__(
        self,
        env_ids: str | Sequence[str],
        num_envs: int | None = None,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
        **env_kwargs: Any,
    ) -> None:
        if isinstance(env_ids, str):
            count = 1 if num_envs is None else num_envs
            ids = [env_ids] * count
        else:
            ids = list(env_ids)
            if num_envs is not None and num_envs != len(ids):
                raise BadRequest(
                    f"num_envs={num_envs} does not match the {len(ids)} ids given; "
                    "pass one id with num_envs, or a list of ids alone"
                )
        if not ids:
            raise BadRequest("a vector env needs at least one environment")
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in AutoresetMode)
            raise BadRequest(
                f"unknown autoreset_mode {autoreset_mode!r}; choose one of {choices}"
            ) from None
        #: The id of each environment, by index.
        self.env_ids: list[str] = ids
        #: How many environments the vector holds.
        self.num_envs = len(ids)
        #: When a finished environment is reset (see `AutoresetMode`).
        self.autoreset_mode = mode
        #: The registry spec of each environment, by index (checked when built).
        self.specs: list[EnvSpec] = [resolve(env_id) for env_id in ids]
        self._env_kwargs = env_kwargs
        #: The environments, by index (empty when they live in other processes).
        self.envs: list[Env] = (
            [build(spec, **env_kwargs) for spec in self.specs] if self._in_process else []
        )
        self._slots = [Slot(self.autoreset_mode) for _ in self.envs]

    def close(self) -> None:
        """Close every environment."""
        for env in self.envs:
            env.close()

    async def aclose(self) -> None:
        """Async twin of `close`."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _indices(self, indices: Sequence[int] | None) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        chosen: list[int] = []
        for index in indices:
            try:
                value = operator.index(index)
            except TypeError:
                raise BadRequest(f"indices must be integers, got {index!r}") from None
            if not 0 <= value < self.num_envs:
                raise BadRequest(
                    f"index {value} is out of range for a vector of {self.num_envs} envs"
                )
            chosen.append(value)
        if len(set(chosen)) != len(chosen):
            raise BadRequest(f"indices must not repeat, got {chosen}")
        return chosen

    def _reset_calls(
        self, seed: SeedArg, indices: Sequence[int] | None
    ) -> list[tuple[int, int | None]]:
        chosen = self._indices(indices)
        if seed is None:
            return [(index, None) for index in chosen]
        if isinstance(seed, int):
            return [(index, seed + index) for index in chosen]
        seeds = list(seed)
        if len(seeds) != len(chosen):
            raise BadRequest(f"got {len(seeds)} seeds for {len(chosen)} environments")
        return list(zip(chosen, seeds, strict=True))

    def _step_calls(
        self, actions: Sequence[str], indices: Sequence[int] | None
    ) -> list[tuple[int, str]]:
        if isinstance(actions, str):
            raise BadRequest("actions must be a sequence of strings, one per environment")
        chosen = self._indices(indices)
        if len(actions) != len(chosen):
            raise BadRequest(f"got {len(actions)} actions for {len(chosen)} environments")
        return list(zip(chosen, actions, strict=True))

    @staticmethod
    def _reset_result(transitions: Sequence[Transition]) -> VectorReset:
        return [t.observation for t in transitions], [t.info for t in transitions]

    @staticmethod
    def _step_result(transitions: Sequence[Transition]) -> VectorStep:
        return (
            [t.observation for t in transitions],
            [t.reward for t in transitions],
            [t.terminated for t in transitions],
            [t.truncated for t in transitions],
            [t.info for t in transitions],
        )
