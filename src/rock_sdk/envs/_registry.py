"""The registry of environment specs: ids mapped to an entry point and default arguments.

Rules:
- An entry point is a class (or any callable returning an `Env`) or a ``"module:Name"``
  string imported on first use.
- ``make(id, **kwargs)`` builds ``entry_point(**{**defaults, **kwargs})``: call-time
  arguments override the registered defaults.
- Registering an id again with the same spec is a no-op; with a different spec it raises
  `AlreadyExists`. An unknown id raises `NotFound` naming the closest registered ids.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rock_core import AlreadyExists, BadRequest, NotFound

from ._env import Env

__all__ = ["EnvSpec", "Registry", "list_envs", "register", "registry"]

EntryPoint = Callable[..., Env] | str


@dataclass(frozen=True)
class EnvSpec:
    """How to build one environment id: an entry point and its default keyword arguments."""

    id: str
    entry_point: EntryPoint
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: The image the environment runs in by default (a sandbox via `RemoteEnv`); empty: in
    #: this process. Set by specs from the hub; ``register`` makes in-process specs.
    image: str = ""

    def load(self) -> Callable[..., Env]:
        """The callable behind the entry point, importing it if it is a string."""
        if not isinstance(self.entry_point, str):
            return self.entry_point
        module_name, _, attribute = self.entry_point.partition(":")
        try:
            loaded: Callable[..., Env] = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise NotFound(
                f"environment {self.id!r}: cannot import entry point {self.entry_point!r}: {exc}"
            ) from exc
        return loaded

    def make(self, **kwargs: Any) -> Env:
        """Build the environment, `kwargs` overriding the registered defaults."""
        factory = self.load()
        arguments = {**self.kwargs, **kwargs}
        try:
            inspect.signature(factory).bind(**arguments)
        except TypeError as exc:
            raise BadRequest(f"environment {self.id!r}: bad arguments {arguments}: {exc}") from exc
        except ValueError:  # no signature to check (some builtins); let the call decide
            pass
        env = factory(**arguments)
        env.env_id = self.id
        return env


class Registry:
    """A mutable mapping of environment ids to `EnvSpec`s."""

    def __init__(self) -> None:
        self._specs: dict[str, EnvSpec] = {}

    def register(self, env_id: str, entry_point: EntryPoint, **defaults: Any) -> EnvSpec:
        """Add `env_id`; the same spec twice is fine, a different one raises `AlreadyExists`."""
        if not isinstance(env_id, str) or not env_id:
            raise BadRequest(f"an environment id is a non-empty string, got {env_id!r}")
        if not (isinstance(entry_point, str) or callable(entry_point)):
            raise BadRequest(
                f"environment {env_id!r}: entry_point must be a callable or a 'module:Name' "
                f"string, got {entry_point!r}"
            )
        if isinstance(entry_point, str) and ":" not in entry_point:
            raise BadRequest(
                f"environment {env_id!r}: entry point {entry_point!r} is not of the form "
                "'module:Name'"
            )
        spec = EnvSpec(env_id, entry_point, dict(defaults))
        existing = self._specs.get(env_id)
        if existing is not None and existing != spec:
            raise AlreadyExists(
                f"environment {env_id!r} is already registered with entry point "
                f"{existing.entry_point!r} and defaults {dict(existing.kwargs)}"
            )
        self._specs[env_id] = spec
        return spec

    def spec(self, env_id: str) -> EnvSpec:
        """The spec of `env_id`; `NotFound` (with the closest ids) if there is none."""
        try:
            return self._specs[env_id]
        except KeyError:
            pass
        close = difflib.get_close_matches(env_id, list(self._specs), n=5, cutoff=0.5)
        hint = (
            f"did you mean {', '.join(repr(match) for match in close)}?"
            if close
            else f"list_envs() shows the {len(self._specs)} registered ids."
        )
        raise NotFound(f"unknown environment id {env_id!r}; {hint}")

    def make(self, env_id: str, **kwargs: Any) -> Env:
        """Build `env_id`, call-time `kwargs` overriding its registered defaults."""
        return self.spec(env_id).make(**kwargs)

    def ids(self, prefix: str = "") -> list[str]:
        """Registered ids starting with `prefix`, sorted."""
        return sorted(env_id for env_id in self._specs if env_id.startswith(prefix))

    def __getitem__(self, env_id: str) -> EnvSpec:
        return self.spec(env_id)

    def __contains__(self, env_id: object) -> bool:
        return env_id in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def __len__(self) -> int:
        return len(self._specs)


#: The process-wide registry that `register`, `make` and `list_envs` use.
registry = Registry()


def register(env_id: str, entry_point: EntryPoint, **defaults: Any) -> EnvSpec:
    """Register `env_id` in the global registry; see `Registry.register`."""
    return registry.register(env_id, entry_point, **defaults)


def list_envs(prefix: str = "") -> list[str]:
    """Every registered id starting with `prefix` (all by default), sorted."""
    return registry.ids(prefix)
