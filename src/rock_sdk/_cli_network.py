"""The network options of `rock run` (``--allow``, ``--allow-dns``) and the network line of
`rock status`.

Rules:
- ``--network`` is the whole network; ``--allow``/``--allow-dns`` build a `NetworkPolicy`
  (docs/network.md); both at once is a usage error, and so is a malformed entry (the policy's
  own `BadRequest` message, said once).
"""

from __future__ import annotations

from typing import Annotated

import typer

from rock_core import BadRequest, NetworkPolicy, SandboxSpec

from ._cli_base import fail

Allow = Annotated[
    list[str] | None,
    typer.Option(
        "--allow",
        metavar="CIDR|HOST[:PORT]",
        help="egress the sandbox may use (repeatable); everything else is refused",
    ),
]
AllowDns = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-dns",
        metavar="NAME|*.SUFFIX",
        help="a name the sandbox may resolve (repeatable); others do not resolve",
    ),
]


def network_choice(
    ctx: typer.Context, network: bool, allow: list[str] | None, dns: list[str] | None
) -> bool | NetworkPolicy:
    """What ``--network``, ``--allow`` and ``--allow-dns`` ask for."""
    if not allow and not dns:
        return network
    if network:
        raise fail(ctx, "--network opens the whole network; --allow/--allow-dns restrict it")
    try:
        return NetworkPolicy(allow=allow or [], dns=dns or [])
    except BadRequest as exc:
        raise fail(ctx, str(exc)) from None


def network_text(spec: SandboxSpec | None) -> str:
    """The network of a sandbox in words."""
    if spec is None:
        return "unknown (made by an older agent)"
    if isinstance(spec.network, NetworkPolicy):
        return f"policy: {spec.network.describe()}"
    return "on (bridge)" if spec.network else "off"


__all__ = ["Allow", "AllowDns", "network_choice", "network_text"]
