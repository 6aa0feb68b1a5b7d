"""The hub: a local store of environment specs (ROCK's envhub, without a server).

Rules:
- A spec (`HubSpec`) names one environment by exactly one of: ``env``, a registered id
  (``game:Sokoban-v0-hard``) whose defaults the spec's `parameters` override; ``entry_point``,
  a ``module:Name`` importable here; or ``task``, a `TaskSpec`. ``image``, for the first two,
  makes the environment run inside a sandbox of that image (`RemoteEnv`); for a task it is the
  task's image. Names are letters, digits, ``.``, ``_`` and ``-``, at most 100.
- The store is a folder, ``envs/`` under the data folder: ``$ROCK_HOME``, else
  ``$XDG_DATA_HOME/rock``, else ``~/.local/share/rock``; one JSON file per spec, named after
  it. Writes are atomic (a temporary file, then a link or rename), so a reader never sees half
  a spec and two processes registering one name cannot both win.
- ``register`` refuses a name in use (`AlreadyExists`) unless ``replace=True``; it fills in
  ``owner`` (the user name) and ``created`` (now) when they are empty. ``get`` and ``delete``
  of an unknown name raise `NotFound` naming the closest names. An invalid spec raises
  `BadRequest` naming what is wrong; a stored file that no longer reads as a spec raises
  `BadRequest` from ``get`` and is skipped (with a warning) by ``list``.
- ``make("hub:NAME", **kwargs)`` builds the environment a spec names; `kwargs` override its
  parameters (for a task, fields of the task).
"""

from __future__ import annotations

import builtins
import contextlib
import difflib
import getpass
import logging
import os
import re
import secrets
import time
from os import PathLike
from pathlib import Path
from typing import Any

import msgspec

from rock_core import AlreadyExists, BadRequest, NotFound

from ._registry import EnvSpec, registry
from ._task import TaskEnv, TaskSpec

__all__ = ["HUB_PREFIX", "Hub", "HubSpec", "data_dir"]

log = logging.getLogger("rock_sdk.envs")

#: Ids starting with this are looked up in the hub by `make`.
HUB_PREFIX = "hub:"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_TAG = re.compile(r"^[^\s,]+$")


def data_dir() -> Path:
    """The user's data folder for this kit: ``$ROCK_HOME``, ``$XDG_DATA_HOME/rock``, or
    ``~/.local/share/rock``."""
    if os.environ.get("ROCK_HOME"):
        return Path(os.environ["ROCK_HOME"])
    if os.environ.get("XDG_DATA_HOME"):
        return Path(os.environ["XDG_DATA_HOME"]) / "rock"
    return Path.home() / ".local" / "share" / "rock"


class HubSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One environment in the hub: what it is (`env`, `entry_point` or `task`) and about it."""

    name: str
    description: str = ""
    env: str = ""
    entry_point: str = ""
    task: TaskSpec | None = None
    image: str = ""
    parameters: dict[str, Any] = {}
    tags: list[str] = []
    owner: str = ""
    created: float = 0.0

    @property
    def kind(self) -> str:
        """``env``, ``entry_point`` or ``task``: which of the three the spec names."""
        return "task" if self.task is not None else "env" if self.env else "entry_point"

    def check(self) -> HubSpec:
        """Return the spec if it is valid; `BadRequest` naming every problem otherwise."""
        problems = []
        if not _NAME.match(self.name):
            problems.append(
                f"name {self.name!r} must be 1 to 100 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        given = [k for k, v in (("env", self.env), ("entry_point", self.entry_point)) if v]
        if self.task is not None:
            given.append("task")
        if len(given) != 1:
            problems.append(
                "give exactly one of env (a registered id), entry_point ('module:Name') or "
                f"task, not {' and '.join(given) or 'none'}"
            )
        if self.entry_point and not _ENTRY_POINT.match(self.entry_point):
            problems.append(f"entry_point {self.entry_point!r} is not of the form 'module:Name'")
        if self.env.startswith(HUB_PREFIX):
            problems.append(f"env {self.env!r} names another hub spec; name a registered id")
        if self.task is not None:
            try:
                self.task.check()
            except BadRequest as exc:
                problems.append(str(exc))
            if self.image and self.image != self.task.image:
                problems.append(
                    f"image {self.image!r} differs from the task's image {self.task.image!r}"
                )
            if self.parameters:
                try:
                    TaskSpec.coerce(self.task, **self.parameters)
                except BadRequest as exc:
                    problems.append(f"parameters do not fit the task: {exc}")
        problems += [
            f"tag {tag!r} is empty or has blanks or commas"
            for tag in self.tags
            if not _TAG.match(tag)
        ]
        try:
            msgspec.json.encode(self.parameters)
        except (TypeError, msgspec.EncodeError) as exc:
            problems.append(f"parameters must be JSON values: {exc}")
        if problems:
            raise BadRequest(f"invalid environment spec {self.name!r}: {'; '.join(problems)}")
        return self

    def env_spec(self) -> EnvSpec:
        """The registry spec `make` builds: entry point, default arguments and image."""
        env_id = HUB_PREFIX + self.name
        if self.task is not None:
            return EnvSpec(env_id, TaskEnv, {"task": self.task, **self.parameters})
        if self.env:
            base = registry.spec(self.env)
            return EnvSpec(
                env_id, base.entry_point, {**base.kwargs, **self.parameters}, image=self.image
            )
        return EnvSpec(env_id, self.entry_point, dict(self.parameters), image=self.image)


class Hub:
    """A folder of `HubSpec` files (the user's data folder unless `root` is given)."""

    def __init__(self, root: str | PathLike[str] | None = None) -> None:
        #: The folder holding one ``NAME.json`` per spec.
        self.root = Path(root) if root is not None else data_dir() / "envs"

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise BadRequest(f"{name!r} is not a hub name (letters, digits, '.', '_', '-')")
        return self.root / f"{name}.json"

    def register(self, spec: HubSpec, *, replace: bool = False) -> HubSpec:
        """Store `spec`; `AlreadyExists` if its name is taken (unless `replace`)."""
        if not isinstance(spec, HubSpec):
            raise BadRequest(f"register takes a HubSpec, got {type(spec).__name__}")
        filled = msgspec.structs.replace(
            spec,
            owner=spec.owner or _user(),
            created=spec.created or time.time(),
            image=spec.image or (spec.task.image if spec.task is not None else ""),
        ).check()
        path = self._path(filled.name)
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / f".{filled.name}.{secrets.token_hex(4)}.tmp"
        try:
            with open(temporary, "wb") as file:
                file.write(msgspec.json.format(msgspec.json.encode(filled), indent=2) + b"\n")
                file.flush()
                os.fsync(file.fileno())
            if replace:
                os.replace(temporary, path)
            else:
                try:
                    os.link(temporary, path)
                except FileExistsError:
                    raise AlreadyExists(
                        f"the hub already has an environment named {filled.name!r}; "
                        "delete it first or register with replace=True"
                    ) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        return filled

    def get(self, name: str) -> HubSpec:
        """The spec named `name`; `NotFound` (with close names) if there is none."""
        path = self._path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise self._unknown(name) from None
        try:
            return msgspec.json.decode(data, type=HubSpec)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"the hub's file {path} is not a valid spec: {exc}") from exc

    def list(self, *, tag: str | None = None, owner: str | None = None) -> builtins.list[HubSpec]:
        """Every spec (sorted by name), only those with `tag` and of `owner` if given."""
        found = []
        for name in self.names():
            try:
                spec = self.get(name)
            except (BadRequest, NotFound) as exc:  # broken or deleted meanwhile
                log.warning("skipping hub entry %s: %s", name, exc)
                continue
            if tag is not None and tag not in spec.tags:
                continue
            if owner is not None and spec.owner != owner:
                continue
            found.append(spec)
        return found

    def names(self) -> builtins.list[str]:
        """The names of every stored spec, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            path.stem
            for path in self.root.glob("*.json")
            if not path.name.startswith(".") and _NAME.match(path.stem)
        )

    def delete(self, name: str) -> None:
        """Remove the spec named `name`; `NotFound` (with close names) if there is none."""
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            raise self._unknown(name) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(_NAME.match(name)) and self._path(name).is_file()

    def _unknown(self, name: str) -> NotFound:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = (
            f"did you mean {', '.join(repr(match) for match in close)}?"
            if close
            else f"the hub at {self.root} has {len(names)} environment(s)."
        )
        return NotFound(f"no environment named {name!r} in the hub; {hint}")

    def __repr__(self) -> str:
        return f"Hub({str(self.root)!r})"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
