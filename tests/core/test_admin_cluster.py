"""An administrator's cluster over the hosts that answer (`open_admin_cluster`), and listings
by host id (`Cluster.sandboxes_by_host`), on fake agents in virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from rock_core import (
    ByteStream,
    HostUnreachable,
    SandboxSpec,
    open_admin_cluster,
    open_cluster,
)
from rock_core._admin import sandboxes_by_host
from rock_core._records import Host
from rock_core.testing import FakeAgent, FakeAgentConnector
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio

SPEC = SandboxSpec(image="img:1", cpus=1, memory=1 << 30)


class DownConnector:
    """A host that never answers."""

    def __init__(self, name: str) -> None:
        self.name = name

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[ByteStream]:
        raise HostUnreachable(f"nothing answers at {self.name}")
        yield  # pragma: no cover  (an async generator that fails before yielding)


async def test_the_hosts_that_answer_are_listed_by_host_id_and_the_others_named() -> None:
    a, b = FakeAgent(host_id="a", images=["img:1"]), FakeAgent(host_id="b", images=["img:1"])
    async with open_cluster([FakeAgentConnector(a)], owner="trainer") as owner:
        record = await owner.create_sandbox(SPEC)
        hosts = [FakeAgentConnector(a), DownConnector("down://x"), FakeAgentConnector(b)]
        async with open_admin_cluster(hosts) as admin:
            assert admin.admin and sorted(admin.hosts) == ["a", "b"]
            assert list(admin.unreachable) == ["down://x"]
            assert str(admin.unreachable["down://x"]) == "nothing answers at down://x"
            by_host = await admin.sandboxes_by_host()
            assert {h: [i.sandbox_id for i in found] for h, found in by_host.items()} == {
                "a": [record.sandbox_id],
                "b": [],
            }
            listed = await admin.list_host_sandboxes()
            assert [info.sandbox_id for info in listed] == [record.sandbox_id]


async def test_when_no_host_answers_its_failure_is_raised() -> None:
    with pytest.raises(HostUnreachable, match=r"^nothing answers at down://x$"):
        async with open_admin_cluster([DownConnector("down://x")]):
            pass  # pragma: no cover


async def test_a_plain_cluster_still_fails_on_a_host_that_does_not_answer() -> None:
    hosts = [FakeAgentConnector(FakeAgent(host_id="a")), DownConnector("down://x")]
    with pytest.raises(HostUnreachable, match=r"^nothing answers at down://x$"):
        async with open_cluster(hosts):
            pass  # pragma: no cover


async def test_a_host_whose_link_broke_is_left_out_of_a_listing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = Host("gone", "ssh://gone", None)  # connected on record, but with no connection
    assert await sandboxes_by_host([broken]) == {}
    assert "host gone is left out of the listing: " in caplog.text
