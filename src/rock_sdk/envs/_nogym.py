"""A stand-in for the few pieces of gymnasium that `Env` uses, for interpreters without it.

Only the in-sandbox environment server (`_remote_server`) needs this: sandbox images have a
bare ``python3`` with no pip packages, yet the games must run there unchanged. `_env` falls
back to this module when (and only when) ``import gymnasium`` fails; in-process, gymnasium is
a dependency and is always the real one. Standard library only.
"""

from __future__ import annotations

import random
from typing import Any, Generic, TypeVar

__all__ = ["Env", "spaces"]

ObsT = TypeVar("ObsT")
ActT = TypeVar("ActT")


class Env(Generic[ObsT, ActT]):
    """What `rock_sdk.envs.Env` inherits from gymnasium's `Env`, minus numpy's `np_random`."""

    metadata: dict[str, Any] = {}  # noqa: RUF012  (overridden whole, as in gymnasium)
    render_mode: str | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        """Nothing to seed here: games draw from their own `random.Random`."""
        return None

    def close(self) -> None:
        """Nothing to release."""

    def render(self) -> Any:
        """No rendering by default."""
        return None


class _Text:
    """`gymnasium.spaces.Text`'s constructor and `sample`, nothing more."""

    def __init__(
        self, max_length: int, *, min_length: int = 1, charset: frozenset[str] | str = ""
    ) -> None:
        self.max_length = max_length
        self.min_length = min_length
        self.charset = "".join(sorted(charset))
        self._rng = random.Random()

    def sample(self) -> str:
        """A random string of the space's characters (at most 64 of them)."""
        length = self._rng.randint(self.min_length, max(self.min_length, min(self.max_length, 64)))
        return "".join(self._rng.choice(self.charset) for _ in range(length))


class spaces:
    """The `Text` space, where `_env` expects ``gymnasium.spaces``."""

    Text = _Text
