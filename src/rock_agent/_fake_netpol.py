"""Network policies in the fake runtime: a model, since its sandboxes run on the host.

Rules:
- The fake records a sandbox's policy (its spec) and enforces it where it makes connections
  for a sandbox (`FakeRuntime.connect`): loopback always passes, as in the real rules; any
  other address must match a network of `allow` (with its port, if it names one), else the
  connect is refused at once, as Docker's reject rule refuses it (`NotFound`, "connection
  refused"). Host names of `allow` are not resolved here: they match nothing.
- Commands of a fake sandbox run on the host, unfiltered: only Docker enforces for them.
"""

from __future__ import annotations

import ipaddress

from rock_core import NotFound
from rock_core.protocol import NetworkPolicy, SandboxSpec


def egress_refused(spec: SandboxSpec, sandbox_id: str, address: str, port: int) -> NotFound | None:
    """The refusal of a connect from the sandbox to `address:port` under its policy; None if
    it may go (no policy, loopback, or allowed)."""
    policy = spec.network
    if not isinstance(policy, NetworkPolicy):
        return None
    try:
        target = ipaddress.ip_address(address)
    except ValueError:
        return None  # not an address: the connect itself says what is wrong
    if target.is_loopback:
        return None
    for rule in policy.rules():
        if rule.network is not None and target in rule.network and rule.port in (None, port):
            return None
    where = f"{address}:{port} in sandbox {sandbox_id}"
    return NotFound(f"nothing listens on {where} (connection refused: not allowed by its policy)")


class FakePolicing:
    """What `FakeRuntime` gains from this module: `restore_network` of the runtime seam."""

    async def restore_network(self) -> list[str]:
        """None: a fake sandbox's policy is a record that needs no process (docs/network.md)."""
        return []


__all__ = ["FakePolicing", "egress_refused"]
