"""A `NetworkPolicy` on the wire and in the core: it travels inside `SandboxSpec.network`,
is checked on both sides, and is refused before it is sent to an agent that does not
announce `network-policy` (an older agent would create the sandbox with the whole network)."""

from __future__ import annotations

import msgspec
import pytest

from rock_core import BadRequest, NetworkPolicy, SandboxSpec, _fake_agent
from rock_core import protocol as p
from rock_core.testing import open_fake_cluster
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

POLICY = NetworkPolicy(allow=["10.0.0.0/8", "pypi.org:443"], dns=["pypi.org", "*.debian.org"])


def test_a_policy_round_trips_and_old_booleans_still_decode() -> None:
    for network in (POLICY, True, False):
        message = p.CreateSandbox(
            id=1, sandbox_id="sb", spec=SandboxSpec(image="img:1", network=network)
        )
        assert p.decode_client_message(p.encode(message)) == message
    as_json = msgspec.json.encode(SandboxSpec(image="img:1", network=POLICY))  # the label
    assert msgspec.json.decode(as_json, type=SandboxSpec).network == POLICY


def test_a_bad_policy_on_the_wire_is_rejected_naming_the_entry() -> None:
    payload = msgspec.msgpack.encode(
        {
            "op": "create",
            "id": 4,
            "sandbox_id": "sb",
            "spec": {"image": "img:1", "network": {"allow": ["10.0.0.0/8:0"]}},
        }
    )
    rejected = p.decode_client_message(payload)
    assert isinstance(rejected, p.Rejected) and rejected.id == 4
    assert isinstance(rejected.error, BadRequest)
    assert str(rejected.error) == (
        "invalid 'create' request: spec.network: network policy entry '10.0.0.0/8:0': "
        "port '0' must be a number from 1 to 65535"
    )


@pytest.mark.anyio
async def test_an_agent_that_announces_policies_keeps_them() -> None:
    async with open_fake_cluster(1) as cluster:
        await cluster.create_sandbox(SandboxSpec(image="img:1", network=POLICY), sandbox_id="a")
        info = await cluster.inspect("a")
        assert info.spec is not None and info.spec.network == POLICY


@pytest.mark.anyio
async def test_an_older_agent_is_refused_a_policy_before_it_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_fake_agent, "NETWORK_POLICY", "no-network-policy")
    async with open_fake_cluster(1) as cluster:
        with pytest.raises(
            BadRequest, match=r"cannot enforce a network policy: upgrade rock-agent"
        ):
            await cluster.create_sandbox(SandboxSpec(image="img:1", network=POLICY))
        await cluster.create_sandbox(SandboxSpec(image="img:1", network=True), sandbox_id="b")
        assert (await cluster.inspect("b")).sandbox_id == "b"  # the link is still fine
