"""`SyncVectorEnv`: the environments stepped one after another in this thread."""

from __future__ import annotations

from collections.abc import Sequence

from ._autoreset import run_plan
from ._vector import SeedArg, VectorEnv, VectorReset, VectorStep

__all__ = ["SyncVectorEnv"]


class SyncVectorEnv(VectorEnv):
    """Several environments stepped in a loop; see `VectorEnv` and `AutoresetMode`.

    ``with SyncVectorEnv("game:Sudoku-v0-easy", 8) as envs: ...`` closes them on exit. The
    async twins (`areset`, `astep`, `aclose`) just call the synchronous methods.
    """

    def reset(self, seed: SeedArg = None, indices: Sequence[int] | None = None) -> VectorReset:
        """Reset every environment (or those at `indices`); seeds as `VectorEnv` says."""
        return self._reset_result(
            [
                run_plan(self._slots[index].reset(one_seed), self.envs[index])
                for index, one_seed in self._reset_calls(seed, indices)
            ]
        )

    def step(self, actions: Sequence[str], indices: Sequence[int] | None = None) -> VectorStep:
        """Step every environment (or those at `indices`) with one action each."""
        return self._step_result(
            [
                run_plan(self._slots[index].step(action), self.envs[index])
                for index, action in self._step_calls(actions, indices)
            ]
        )

    async def areset(
        self, seed: SeedArg = None, indices: Sequence[int] | None = None
    ) -> VectorReset:
        """Async twin of `reset`."""
        return self.reset(seed, indices)

    async def astep(
        self, actions: Sequence[str], indices: Sequence[int] | None = None
    ) -> VectorStep:
        """Async twin of `step`."""
        return self.step(actions, indices)
