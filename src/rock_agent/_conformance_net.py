"""The conformance check of network policies: what every `ContainerRuntime` keeps of one.

Rules (those of `_conformance`, whose `CHECKS` holds this too):
- A sandbox created with a `NetworkPolicy` runs and reports the policy as created, after a
  stop and a start too (Docker applies it again to the new namespace; the fake records it).
- A connect the runtime makes from inside it (`connect`) to an address the policy does not
  allow is refused at once (`NotFound`, "refused"): Docker's reject rule, the fake's model.
- `restore_network` restores nothing this process already enforces.
- What the rules let through is checked on Docker only (tests/integration/test_network_policy.py):
  the fake runs its processes on the host, where nothing can be filtered.
"""

from __future__ import annotations

import anyio

from rock_core import NotFound
from rock_core.protocol import NetworkPolicy, SandboxSpec

from ._conformance_kit import OWNER, STEP_TIMEOUT, check, new_id
from ._runtime import ContainerRuntime

DENIED = "198.51.100.7"  # TEST-NET-2: routed nowhere, so only a reject answers at once
POLICY = NetworkPolicy(allow=["127.0.0.1", "10.0.0.0/8:443"], dns=["localhost", "*.example.org"])


async def _refused(runtime: ContainerRuntime, sandbox_id: str) -> None:
    """A connect from inside the sandbox to an address its policy does not allow is refused at
    once (not left to time out: nothing would answer at that address)."""
    try:
        with anyio.fail_after(STEP_TIMEOUT):
            stream = await runtime.connect(sandbox_id, DENIED, 80)
    except NotFound as exc:
        check("refused" in str(exc), f"a denied connect failed otherwise: {exc}")
    else:
        await stream.aclose()
        raise AssertionError(f"a connect to {DENIED}:80, not allowed, went through")


async def check_network_policy(runtime: ContainerRuntime, image: str) -> None:
    """A policy sandbox runs, keeps its policy over a restart, and needs no restoring."""
    sandbox_id = new_id("netpol")
    spec = SandboxSpec(image=image, memory=256 << 20, network=POLICY)
    try:
        info = await runtime.create(sandbox_id, spec, OWNER, runtime.uid)
        check(info.state == "running", f"a policy sandbox is {info.state}, not running")
        check(info.spec is not None and info.spec.network == POLICY, f"policy lost: {info.spec}")
        await _refused(runtime, sandbox_id)
        restored = await runtime.restore_network()
        check(sandbox_id not in restored, f"a policy enforced already was restored: {restored}")
        await runtime.stop(sandbox_id, 1)
        await runtime.start(sandbox_id)
        info = await runtime.inspect(sandbox_id)
        check(info.state == "running", f"a restarted policy sandbox is {info.state}")
        check(info.spec is not None and info.spec.network == POLICY, "restart lost the policy")
        await _refused(runtime, sandbox_id)  # the rules came back with the new namespace
    finally:
        with anyio.CancelScope(shield=True):
            await runtime.remove(sandbox_id)


__all__ = ["POLICY", "check_network_policy"]
