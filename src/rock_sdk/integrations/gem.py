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

import functools
from typing import Any

import gem
from gem.envs.registration import ENV_REGISTRY

from rock_sdk import AlreadyExists
from rock_sdk.envs import make

from ._env_ids import PREFIX, published_ids

__all__ = ["PREFIX", "register"]


def _is_ours(entry_point: Any, env_id: str) -> bool:
    return (
        isinstance(entry_point, functools.partial)
        and entry_point.func is make
        and entry_point.args == (env_id,)
    )


def register() -> list[str]:
    """Register our ids not yet in GEM's registry; returns the GEM ids added."""
    added = []
    for env_id in published_ids():
        name = PREFIX + env_id
        existing = ENV_REGISTRY.get(name)
        if existing is not None:
            if _is_ours(existing.entry_point, env_id):
                continue
            raise AlreadyExists(
                f"GEM's registry already holds {name!r} with entry point "
                f"{existing.entry_point!r}, not rock_sdk.envs.make({env_id!r})"
            )
        gem.register(name, functools.partial(make, env_id))
        added.append(name)
    return added


register()
