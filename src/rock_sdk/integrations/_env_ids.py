"""The environment ids the GEM and skyrl-gym registrations publish, and their prefix.

Rules:
- Published: every id of `rock_sdk.envs`' registry (the games and ids registered so far) and
  every spec in the default `Hub` as ``hub:NAME``, each as ``rock/`` + the id.
- Computed at each call, so ids added later are published by registering again.
"""

from __future__ import annotations

from rock_sdk.envs import Hub, list_envs

__all__ = ["PREFIX", "published_ids"]

#: What an id of ours starts with in a foreign registry: ``rock/game:Sokoban-v0-easy``.
PREFIX = "rock/"


def published_ids() -> list[str]:
    """Our ids (without the prefix): the registry's, then the hub's as ``hub:NAME``."""
    return [*list_envs(), *(f"hub:{name}" for name in Hub().names())]
