"""Which cluster the `rock` commands reach: the config file, ``--hosts`` and ``$ROCK_HOSTS``.

Rules:
- The root options ``--config PATH`` and ``--hosts H,H`` are kept for the command that runs
  (`choose`, called by the root callback on every command line). The config file is read when
  a command first needs it (`config`), so a broken file fails only the commands that use it:
  with `ConfigError`, one line naming the file, the key and the value, exit 125.
- Hosts: ``--hosts`` > ``$ROCK_HOSTS`` > the file's ``hosts`` > ``local``
  (`RockConfig.cluster_hosts`, the same rule a program gets from `load_config`).
- `rock run` places its sandbox through the cluster's scheduler when hosts are configured
  (`fresh_sandbox`); with ``local`` alone, on this host's engine as a program's `Sandbox` does.
- A listing's rows carry their host (`HostedSandbox`, the ``HOST`` column and ``host`` field).
- Nothing here imports another CLI module except `_cli_format`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from rock_core import Cluster
from rock_core.protocol import SandboxInfo

from ._cli_format import Column, duration
from ._config import SandboxConfig
from ._config_file import RockConfig, load_config
from ._sandbox import Sandbox


@dataclass
class _Choice:
    config_path: str | None = None
    hosts: str | None = None
    loaded: RockConfig | None = None


_choice = _Choice()


def choose(config_path: str | None, hosts: str | None) -> None:
    """Keep the root options ``--config`` and ``--hosts`` of this command line."""
    global _choice
    _choice = _Choice(config_path, hosts)


def config() -> RockConfig:
    """The config file chosen (read once per command line; `ConfigError` if it is bad)."""
    if _choice.loaded is None:
        _choice.loaded = load_config(_choice.config_path)
    return _choice.loaded


def hosts() -> list[str]:
    """The hosts the commands reach (see the module's rules)."""
    return config().cluster_hosts(_choice.hosts)


def is_clustered() -> bool:
    """Whether hosts other than this machine's engine alone were configured."""
    return hosts() != ["local"]


@asynccontextmanager
async def fresh_sandbox(sandbox: SandboxConfig) -> AsyncIterator[Sandbox]:
    """A new sandbox of `sandbox` (deleted after the block), placed on the chosen hosts."""
    if not is_clustered():
        async with Sandbox(sandbox) as sb:
            yield sb
        return
    async with (
        config().open_cluster(hosts()) as cluster,
        Sandbox(sandbox, cluster=cluster.core) as sb,
    ):
        yield sb


class HostedSandbox(SandboxInfo, kw_only=True):
    """A sandbox as the agent of host `host` reports it: a row of `rock ps`."""

    host: str


async def hosted_sandboxes(cluster: Cluster, owner: str = "") -> list[HostedSandbox]:
    """Every sandbox of every connected host of `cluster`, oldest first, with its host."""
    by_host = await cluster.sandboxes_by_host(owner=owner)
    rows = [hosted(host, info) for host, found in by_host.items() for info in found]
    return sorted(rows, key=lambda row: (row.created_at, row.host))


def hosted(host: str, info: SandboxInfo) -> HostedSandbox:
    """`info` with its `host`."""
    fields = {name: getattr(info, name) for name in info.__struct_fields__}
    return HostedSandbox(host=host, **fields)


def age(info: SandboxInfo) -> str:
    """How long ago `info` was created, for a table cell."""
    return duration(time.time() - info.created_at, compact=True)


SANDBOX_COLUMNS: Sequence[Column[HostedSandbox]] = [
    Column("SANDBOX", lambda i: i.sandbox_id),
    Column("IMAGE", lambda i: i.image),
    Column("STATE", lambda i: i.state),
    Column("AGE", age),
    Column("OWNER", lambda i: i.owner),
    Column("HOST", lambda i: i.host),
]
