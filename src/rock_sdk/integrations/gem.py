"""Our environments in GEM's registry (gem-llm), for trainers that build envs with `gem.make`.

ROLL's and OpenRLHF's GEM integrations name an env id in their config and call
``gem.make(env_id, **config)``. Importing this module registers every id of `rock_sdk.envs`
there as ``rock/<id>`` (the games, task and other ids registered before the import, and the
hub's specs as ``rock/hub:NAME``); call `register()` again to publish ids added later.

Rules:
- ``gem.make("rock/ID", **kwargs)`` is ``rock_sdk.envs.make("ID", **kwargs)``: the same env,
  call-time kwargs overriding the registered defaults (``sandbox=True`` runs it in a sandbox).
- The env has GEM's shape already: ``reset(seed) -> (observation, info)`` and ``step(action)
  -> (observation, reward, terminated, truncated, info)``, with string observations and
  actions.
- Registering is idempotent: an id GEM holds with our entry point is skipped; one held by
  another entry point raises `AlreadyExists` (GEM itself refuses any second registration).
- Registration happens in the importing process only: every process that calls `gem.make`
  (a trainer's env workers too) must import this module first.
"""

from __future__ import annotations

import gem
from gem.envs.registration import ENV_REGISTRY

from rock_sdk.envs import make

from ._env_ids import PREFIX, publish

__all__ = ["PREFIX", "register"]


def register() -> list[str]:
    """Register our ids not yet in GEM's registry; returns the GEM ids added."""
    return publish(ENV_REGISTRY, gem.register, make, "GEM's registry")


register()
