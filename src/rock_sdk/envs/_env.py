"""The environment interface: a text-in, text-out `gymnasium.Env` with async twins.

Every environment of this package takes a string action and returns a string observation, so
both spaces are `gymnasium.spaces.Text`. The async twins (`areset`, `astep`, `aclose`) call
the synchronous methods by default; an environment that does I/O overrides them so that a
vector of such environments can wait on all of them at once.
"""

from __future__ import annotations

import random
import string
from typing import Any

from rock_core import BadRequest

try:
    import gymnasium
    from gymnasium import spaces
except ModuleNotFoundError as missing:  # only in a sandbox's bare python3 (see `_nogym`)
    if missing.name != "gymnasium":
        raise
    from . import _nogym as gymnasium  # type: ignore[no-redef]
    from ._nogym import spaces  # type: ignore[no-redef]

__all__ = ["MAX_TEXT_LENGTH", "TEXT_CHARSET", "Env", "ResetResult", "StepResult", "text_space"]

#: Longest observation or action the spaces admit; generous for chat-sized text.
MAX_TEXT_LENGTH = 65_536

#: Every character an observation may hold: printable ASCII plus the few symbols games draw.
TEXT_CHARSET: frozenset[str] = frozenset(string.printable) | frozenset("√")

#: What `Env.reset` returns: the observation and an info dict.
ResetResult = tuple[str, dict[str, Any]]

#: What `Env.step` returns: observation, reward, terminated, truncated, info.
StepResult = tuple[str, float, bool, bool, dict[str, Any]]


def text_space() -> spaces.Text:
    """A fresh `Text` space over `TEXT_CHARSET` holding up to `MAX_TEXT_LENGTH` characters."""
    return spaces.Text(max_length=MAX_TEXT_LENGTH, min_length=0, charset=TEXT_CHARSET)


class Env(gymnasium.Env[str, str]):
    """A text environment: ``reset(seed) -> (obs, info)``, ``step(action) -> 5-tuple``.

    Subclasses implement `reset` and `step` (and `close` when they hold resources). Their
    `reset` starts with ``rng = self._reseed(seed)`` and draws all randomness from `rng`, so
    the seed fixes the episode and gymnasium's `np_random` follows it.
    """

    # gymnasium declares `metadata` as an instance attribute; each class overrides it whole.
    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 1}  # noqa: RUF012

    #: The registry id this instance was made from, set by `make`; None when built directly.
    env_id: str | None = None

    def __init__(self, render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise BadRequest(
                f"render_mode {render_mode!r} is not supported; "
                f"choose one of {self.metadata['render_modes']} or None"
            )
        self.render_mode = render_mode
        self.observation_space = text_space()
        self.action_space = text_space()
        self._rng: random.Random | None = None

    def reset(
        self, seed: int | None = None, *, options: dict[str, Any] | None = None
    ) -> ResetResult:
        """Start a new episode; the same seed always gives the same episode."""
        raise NotImplementedError

    def _reseed(self, seed: int | None) -> random.Random:
        """Seed gymnasium's `np_random` and this environment's own `random.Random`.

        A seed restarts both streams; None keeps the current stream going (a fresh,
        OS-seeded one the first time), as gymnasium does. The global `random` module is
        never touched.
        """
        gymnasium.Env.reset(self, seed=seed)
        if seed is not None or self._rng is None:
            self._rng = random.Random(seed)
        return self._rng

    def step(self, action: str) -> StepResult:
        """Play one action and return (observation, reward, terminated, truncated, info)."""
        raise NotImplementedError

    def sample_random_action(self) -> str:
        """A random action; games override this to return a random well-formed boxed move."""
        action: str = self.action_space.sample()
        return action

    async def areset(
        self, seed: int | None = None, *, options: dict[str, Any] | None = None
    ) -> ResetResult:
        """Async twin of `reset`; calls it unless the environment overrides this."""
        return self.reset(seed, options=options)

    async def astep(self, action: str) -> StepResult:
        """Async twin of `step`; calls it unless the environment overrides this."""
        return self.step(action)

    async def aclose(self) -> None:
        """Async twin of `close`; calls it unless the environment overrides this."""
        self.close()
