"""The environment ids the GEM and skyrl-gym registrations publish, their prefix, and the one
way both registries are filled.

Rules:
- Published: every id of `rock_sdk.envs`' registry (the games and ids registered so far) and
  every spec in the default `Hub` as ``hub:NAME``, each as ``rock/`` + the id.
- Computed at each call, so ids added later are published by registering again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from rock_sdk import AlreadyExists
from rock_sdk.envs import Hub, list_envs

__all__ = ["PREFIX", "publish", "published_ids"]

#: What an id of ours starts with in a foreign registry: ``rock/game:Sokoban-v0-easy``.
PREFIX = "rock/"


def published_ids() -> list[str]:
    """Our ids (without the prefix): the registry's, then the hub's as ``hub:NAME``."""
    return [*list_envs(), *(f"hub:{name}" for name in Hub().names())]


def publish(
    registry: Mapping[str, Any],
    register: Callable[[str, Any], object],
    factory: Callable[..., Any],
    where: str,
) -> list[str]:
    """Register ``functools.partial(factory, id)`` as ``rock/ID`` for each of our ids not yet in
    `registry` (a foreign registry: name -> spec with an `entry_point`); returns the names added.

    An id already there as ours is skipped, so publishing again is a no-op; an id held by
    another entry point is `AlreadyExists`, naming `where` and what holds it.
    """
    added = []
    for env_id in published_ids():
        name = PREFIX + env_id
        existing = registry.get(name)
        if existing is not None:
            entry = existing.entry_point
            if (
                isinstance(entry, functools.partial)
                and entry.func is factory
                and entry.args == (env_id,)
            ):
                continue
            raise AlreadyExists(
                f"{where} already holds {name!r} with entry point {entry!r}, "
                f"not {factory.__name__}({env_id!r}) of rock_sdk"
            )
        register(name, functools.partial(factory, env_id))
        added.append(name)
    return added
