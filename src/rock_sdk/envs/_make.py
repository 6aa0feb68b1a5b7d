"""`make`: one entry for every environment, in process, in a sandbox, or from the hub.

Rules:
- ``make(id, **kwargs)`` builds a registered id in this process (call-time `kwargs` override
  the registered defaults); ``hub:NAME`` ids come from the `Hub` (see `_hub`).
- ``sandbox=`` runs the environment inside a sandbox instead (`RemoteEnv`): a caller's
  `Sandbox`, a `SandboxFactory`, a `SandboxConfig`, or True for the default one. ``cluster=``
  says where new sandboxes are made (and that the env lives in the caller's event loop). A
  hub spec with an image runs in a sandbox of that image unless ``sandbox=False``.
- Environments that manage sandboxes themselves (`TaskEnv`) take ``sandbox=`` and
  ``cluster=`` as their own arguments.
"""

from __future__ import annotations

from typing import Any

from rock_core import BadRequest, Cluster

from .._config import SandboxConfig
from ._env import Env
from ._hub import HUB_PREFIX, Hub
from ._registry import EnvSpec, registry
from ._remote import DEFAULT_REMOTE_CONFIG, RemoteEnv
from ._sandbox_env import SandboxEnv, SandboxSource

__all__ = ["build", "make", "resolve"]


def resolve(env_id: str) -> EnvSpec:
    """The spec of a registered id or of a ``hub:NAME``; `NotFound` with close matches."""
    if isinstance(env_id, str) and env_id.startswith(HUB_PREFIX):
        return Hub().get(env_id[len(HUB_PREFIX) :]).env_spec()
    return registry.spec(env_id)


def build(
    spec: EnvSpec,
    *,
    sandbox: SandboxSource = None,
    cluster: Cluster | None = None,
    **kwargs: Any,
) -> Env:
    """Build `spec` in process, or in a sandbox when `sandbox` (or the spec's image) says so."""
    factory = spec.load()
    if isinstance(factory, type) and issubclass(factory, SandboxEnv):
        own = {"sandbox": sandbox, "cluster": cluster}
        return spec.make(**{k: v for k, v in own.items() if v is not None}, **kwargs)
    if sandbox is None and spec.image:
        sandbox = SandboxConfig(
            image=spec.image, cpus=DEFAULT_REMOTE_CONFIG.cpus, memory=DEFAULT_REMOTE_CONFIG.memory
        )
    if sandbox is None or sandbox is False:
        if cluster is not None:
            raise BadRequest(
                f"environment {spec.id!r} runs in this process; cluster= only applies with "
                "sandbox= (e.g. sandbox=True)"
            )
        return spec.make(**kwargs)
    return RemoteEnv(spec, kwargs, sandbox=sandbox, cluster=cluster)


def make(
    env_id: str,
    *,
    sandbox: SandboxSource = None,
    cluster: Cluster | None = None,
    **kwargs: Any,
) -> Env:
    """Build an environment: ``make("game:Sokoban-v0-easy")``, in a sandbox with
    ``sandbox=True``, or from the hub with ``make("hub:NAME")``; `kwargs` override defaults."""
    return build(resolve(env_id), sandbox=sandbox, cluster=cluster, **kwargs)
