"""Our environments in skyrl-gym's registry, for SkyRL: ``skyrl_gym.make("rock/<id>")``.

Importing this module registers every id of `rock_sdk.envs` (as `rock_sdk.integrations.gem`
does for GEM: the games, ids registered before the import, and the hub's specs as
``rock/hub:NAME``); call `register()` again to publish ids added later. Each is built as a
`SkyRLEnv`: skyrl-gym's text-env shape over one of our envs.

Rules:
- ``skyrl_gym.make("rock/ID", env_config=..., extras=...)``: the items of `env_config` are
  ``rock_sdk.envs.make`` keyword arguments; ``extras["seed"]`` seeds `init`'s reset.
- ``init(prompt)`` resets the env and returns the prompt followed by the first observation
  as a user message; ``step(action)`` returns ``{"observations", "reward", "done",
  "metadata"}``: the next observation as a user message (none once done), the step's reward,
  terminated-or-truncated, and the env's info with the observation under ``"observation"``.
- Registering is idempotent; an id held by another entry point raises `AlreadyExists`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import skyrl_gym
from skyrl_gym.envs.base_text_env import BaseTextEnv
from skyrl_gym.envs.registration import registry

from rock_sdk import BadRequest
from rock_sdk.envs import Env, make

from ._env_ids import PREFIX, publish

__all__ = ["PREFIX", "SkyRLEnv", "register"]

Messages = list[dict[str, str]]


class SkyRLEnv(BaseTextEnv):  # type: ignore[misc,unused-ignore]  # Any where skyrl-gym is absent
    """One of our envs as a skyrl-gym text env; see the module's rules."""

    def __init__(
        self,
        env_id: str,
        env_config: Mapping[str, Any] | None = None,
        extras: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if env_config is not None and not isinstance(env_config, Mapping):
            raise BadRequest(
                f"env_config must be a mapping of make() arguments, got {env_config!r}"
            )
        self.extras = dict(extras or {})
        self.env: Env = make(env_id, **dict(env_config or {}))

    def init(self, prompt: Messages | None = None) -> tuple[Messages, dict[str, Any]]:
        """Reset; the prompt (if any) then the first observation as a user message."""
        observation, info = self.env.reset(seed=self.extras.get("seed"))
        self.turns = 0
        return [*(prompt or []), {"role": "user", "content": observation}], info

    def step(self, action: str) -> dict[str, Any]:
        """One move: skyrl-gym's step output (a ``BaseTextEnvStepOutput`` dict)."""
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.turns += 1
        done = bool(terminated or truncated)
        return {
            "observations": [] if done else [{"role": "user", "content": observation}],
            "reward": float(reward),
            "done": done,
            "metadata": {**info, "observation": observation},
        }

    def close(self) -> None:
        """Close the env (a sandboxed one deletes its sandbox)."""
        self.env.close()


def register() -> list[str]:
    """Register our ids not yet in skyrl-gym's registry; returns the ids added."""
    return publish(registry, skyrl_gym.register, SkyRLEnv, "skyrl-gym's registry")


register()
