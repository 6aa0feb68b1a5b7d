"""The kit's config file (``~/.config/rock/config.toml``), shared by the `rock` CLI and programs.

`load_config` reads it into a `RockConfig`: the cluster's hosts, how to reach ``ssh://`` hosts,
defaults for new sandboxes, and named warm pools. A trainer opens the same cluster and pools
as the CLI lists (`RockConfig.open_cluster`, `RockConfig.open_pool`).

Rules:
- Where: the `path` given, else ``$ROCK_CONFIG``, else ``$XDG_CONFIG_HOME/rock/config.toml``
  (``~/.config`` when unset). A missing file at the default place is an empty config; a
  missing file that was named (`path`, ``$ROCK_CONFIG``) is an error.
- Every value is checked when the file is read. A refusal is one `ConfigError` (a
  `BadRequest`) naming the file, the key and the value: TOML syntax, an unknown key, a wrong
  type (msgspec checks the shape), and a bad value (the SDK's own checks: `SandboxConfig`,
  `PoolOptions`; times are positive and finite).
- Hosts: the hosts given by the caller win, then ``$ROCK_HOSTS`` (comma-separated), then the
  file's ``hosts``, then ``local`` (`RockConfig.cluster_hosts`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec

from rock_core import BadRequest, PoolOptions, SshOptions

from ._cluster import SandboxCluster, open_cluster
from ._config import SandboxConfig
from ._pool import Pool

CONFIG_ENV = "ROCK_CONFIG"
HOSTS_ENV = "ROCK_HOSTS"
DEFAULT_HOSTS = ("local",)
MAX_SECONDS = 86400.0  # an SSH timeout longer than a day is a typo

_T = TypeVar("_T")
Seconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_SECONDS)]


class ConfigError(BadRequest):
    """The config file cannot be read, or holds an unknown key or a bad value."""


class _Ssh(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``[ssh]``: the fields of `SshOptions`; a key left out keeps its default."""

    known_hosts: str | None = None
    verify_host_key: bool | None = None
    config: list[str] | None = None
    client_keys: list[str] | None = None
    connect_timeout: Seconds | None = None
    keepalive_interval: Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)] | None = None


class ConfigDefaults(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``[defaults]``: what `rock run` (and `RockConfig.sandbox_config`) use when not given."""

    image: str | None = None
    cpus: float | None = None
    memory: str | None = None


class PoolConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``[pools.NAME]``: a named warm pool: its sandboxes (image and limits) and its size."""

    image: str | None = None
    size: Annotated[int, msgspec.Meta(ge=0)] = 1
    max_size: Annotated[int, msgspec.Meta(ge=1)] | None = None
    cpus: float | None = None
    memory: str | None = None


class _File(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    hosts: list[str] | None = None
    ssh: _Ssh | None = None
    defaults: ConfigDefaults = ConfigDefaults()
    pools: dict[str, dict[str, Any]] = {}  # each converted on its own, to name it in errors


@dataclass(frozen=True, kw_only=True)
class RockConfig:
    """What the config file says (an empty config when there is none); see `load_config`."""

    path: Path | None = None
    hosts: tuple[str, ...] = ()
    ssh: SshOptions | None = None
    defaults: ConfigDefaults = field(default_factory=ConfigDefaults)
    pools: Mapping[str, PoolConfig] = field(default_factory=dict)

    def cluster_hosts(self, given: str | Sequence[str] | None = None) -> list[str]:
        """The hosts to connect: `given` (a list, or comma-separated), else ``$ROCK_HOSTS``,
        else the file's ``hosts``, else ``local``."""
        for source in (given, os.environ.get(HOSTS_ENV), self.hosts):
            hosts = _host_list(source)
            if hosts:
                return hosts
        return list(DEFAULT_HOSTS)

    def sandbox_config(self, image: str | None = None, **changes: Any) -> SandboxConfig:
        """A `SandboxConfig` from ``[defaults]``; `image` and `changes` win over it."""
        return _sandbox_config(self.defaults, image, changes)

    def pool_config(self, name: str) -> PoolConfig:
        """The pool ``[pools.NAME]`` (`ConfigError` naming the configured ones if absent)."""
        if name not in self.pools:
            known = ", ".join(sorted(self.pools)) or "none"
            raise ConfigError(f"{self._where}: no pool {name!r} (configured pools: {known})")
        return self.pools[name]

    @asynccontextmanager
    async def open_cluster(
        self, hosts: str | Sequence[str] | None = None, **changes: Any
    ) -> AsyncIterator[SandboxCluster]:
        """`rock_sdk.open_cluster` on `cluster_hosts(hosts)` with the file's SSH options;
        `changes` are further `ClusterOptions` fields."""
        changes = {"ssh": self.ssh, **changes}
        async with open_cluster(self.cluster_hosts(hosts), **changes) as cluster:
            yield cluster

    @asynccontextmanager
    async def open_pool(
        self, cluster: SandboxCluster, name: str, **changes: Any
    ) -> AsyncIterator[Pool]:
        """The pool ``[pools.NAME]`` in `cluster` (named `name`, so `rock pool ls` finds its
        members); `changes` are further options of `SandboxCluster.open_pool`."""
        pool = self.pool_config(name)
        config = _sandbox_config(self.defaults, pool.image, _limits(pool))
        sizes = {"min_size": pool.size, "max_size": pool.max_size}
        async with cluster.open_pool(config, name=name, **{**sizes, **changes}) as opened:
            yield opened

    @property
    def _where(self) -> str:
        return f"config file {self.path}" if self.path else "config"


def config_path(path: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """The config file to read, and whether it was named (rather than the default place)."""
    if path is not None:
        return Path(path), True
    named = os.environ.get(CONFIG_ENV)
    if named:
        return Path(named), True
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "rock" / "config.toml", False


def load_config(path: str | os.PathLike[str] | None = None) -> RockConfig:
    """Read and check the config file (see the module's rules for where it is)."""
    where, named = config_path(path)
    try:
        text = where.read_bytes().decode()
    except FileNotFoundError:
        if named:
            raise ConfigError(f"config file {where} does not exist") from None
        return RockConfig()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {where} cannot be read: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {where} is not valid TOML: {exc}") from None
    parsed = _convert(where, raw, _File, [])
    pools = {
        name: _convert(where, table, PoolConfig, ["pools", name])
        for name, table in parsed.pools.items()
    }
    return _checked(where, parsed, pools)


def _convert(where: Path, raw: Any, kind: type[_T], at: list[str]) -> _T:
    """`raw` (the TOML table at key path `at`) as `kind`, or a `ConfigError` naming the key."""
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"config file {where}: {_refusal(raw, at, str(exc))}") from None


def _checked(where: Path, parsed: _File, pools: dict[str, PoolConfig]) -> RockConfig:
    """The config of `parsed`, its values checked by the SDK's own rules."""
    key = "defaults"
    try:
        _sandbox_config(parsed.defaults, None, {})
        for name, pool in pools.items():
            key = f"pools.{name}"
            _sandbox_config(parsed.defaults, pool.image, _limits(pool))
            PoolOptions(name=name, min_size=pool.size, max_size=pool.max_size)
    except BadRequest as exc:
        raise ConfigError(f"config file {where}: [{key}] {exc}") from None
    ssh = None
    if parsed.ssh is not None:
        given = {k: v for k, v in msgspec.structs.asdict(parsed.ssh).items() if v is not None}
        ssh = SshOptions(**given)
    return RockConfig(
        path=where,
        hosts=tuple(parsed.hosts or ()),
        ssh=ssh,
        defaults=parsed.defaults,
        pools=pools,
    )


def _limits(pool: PoolConfig) -> dict[str, Any]:
    return {k: v for k, v in (("cpus", pool.cpus), ("memory", pool.memory)) if v is not None}


def _sandbox_config(
    defaults: ConfigDefaults, image: str | None, changes: Mapping[str, Any]
) -> SandboxConfig:
    given = {
        k: v
        for k, v in (
            ("image", defaults.image),
            ("cpus", defaults.cpus),
            ("memory", defaults.memory),
        )
        if v is not None
    }
    if image is not None:
        given["image"] = image
    config = SandboxConfig(**{**given, **changes})
    config.to_spec()  # checks every value (`BadRequest` naming it)
    return config


def _host_list(source: str | Sequence[str] | None) -> list[str]:
    if source is None:
        return []
    parts = source.split(",") if isinstance(source, str) else list(source)
    return [part.strip() for part in parts if part.strip()]


def _refusal(raw: Any, at: list[str], message: str) -> str:
    """msgspec's refusal of `raw` (found at key path `at`) as ``key = value: what is wrong``,
    the key written as in TOML (``ssh.connect_timeout``, ``hosts[1]``)."""
    what, _, where = message.replace(" | null", "").partition(" - at `$")  # a key may be left out
    path: list[str | int] = []
    for part in where.rstrip("`").replace("]", "").replace("[", ".[").split("."):
        if part:
            path.append(int(part[1:]) if part.startswith("[") else part)
    if what.startswith("Object contains unknown field `"):
        path.append(what.split("`")[1])
        what = "Unknown key"
    value = raw
    for step in path:
        value = value[step] if isinstance(step, int) else value.get(step)
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in [*at, *path])
    return f"{key.lstrip('.') or 'the file'} = {value!r}: {what[:1].lower()}{what[1:]}"


__all__ = [
    "ConfigDefaults",
    "ConfigError",
    "PoolConfig",
    "RockConfig",
    "config_path",
    "load_config",
]
