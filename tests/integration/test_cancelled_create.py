"""A create cancelled anywhere on its way through the core and a local agent leaves no
container once the cancelled call returns: the core's quiet remove is answered only after the
agent's create has ended and removed what the engine made for it (the leaked pool member of an
earlier CI run: a refill cancelled by its pool's close)."""

from __future__ import annotations

import time

import anyio
import pytest

from rock_core import Cluster
from rock_core.protocol import SandboxSpec

from ..conftest import SH_IMAGE, labelled_containers

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

SPEC = SandboxSpec(image=SH_IMAGE, memory=64 << 20, cpus=0.5)
FRACTIONS = (0.1, 0.25, 0.4, 0.55, 0.7, 0.85)  # of one create's time, to cancel at


def containers_of(owner: str) -> list[str]:
    """Every container (running or not) the owner's agent labelled as the owner's."""
    return labelled_containers(f"rock.owner={owner}")


async def test_a_cancelled_create_leaves_no_container_when_it_returns(cluster: Cluster) -> None:
    began = time.monotonic()
    record = await cluster.create_sandbox(SPEC)
    took = time.monotonic() - began
    assert containers_of(cluster.owner), "the label filter finds nothing: is it looking?"
    await cluster.delete_sandbox(record.sandbox_id)
    cancelled = 0
    for fraction in FRACTIONS:
        made: list[str] = []
        with anyio.move_on_after(took * fraction):
            made.append((await cluster.create_sandbox(SPEC)).sandbox_id)
        if made:  # done before its cancel
            await cluster.delete_sandbox(made[0])
            continue
        cancelled += 1
        assert containers_of(cluster.owner) == [], f"cancelled after {fraction:.0%}"
    assert cancelled, "no create was cancelled on its way"
