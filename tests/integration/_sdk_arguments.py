"""Helpers of the SDK argument checks (`test_sdk_arguments_*`): every public entry point of
the SDK, given bad arguments, raises a typed `RockError`.

Never a foreign exception (TypeError, AttributeError, UnicodeEncodeError, ...), a hang or a
silent success: each case is asserted by type and message. What goes on the wire is refused
by the schema before it is sent, so after every refusal the sandbox still works on the same
link (the link was never dropped, nothing was deleted). The module's `target` sandbox and the
`sdk` cluster are fixtures of the conftest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

from rock_core._connection import AgentConnection
from rock_sdk import RockError, Sandbox, SandboxCluster, SandboxConfig, SandboxState

from ..conftest import SH_IMAGE

SMALL = SandboxConfig(image=SH_IMAGE, memory="64m", cpus=0.25)
Call = Callable[[Sandbox, SandboxCluster], Awaitable[object]]


def invalid(request: str, field: str) -> str:
    return f"invalid {request!r} request: {field}"


def link_of(sandbox: Sandbox) -> AgentConnection:
    return sandbox.cluster.connection(sandbox.sandbox_id)


def bad_arguments(cases: list[tuple[str, Call, type[RockError], str]]) -> pytest.MarkDecorator:
    """Parametrize a test over (what, call, error class, message) rows, each named by its what."""
    return pytest.mark.parametrize(
        ("call", "error", "message"), [c[1:] for c in cases], ids=[c[0] for c in cases]
    )


async def refused_and_still_works(
    target: Sandbox, sdk: SandboxCluster, call: Call, error: type[RockError], message: str
) -> None:
    """`call` raises `error` with `message` ("{host}" stands for the host's id), and the
    sandbox still works on the same link."""
    (host,) = sdk.hosts
    link = link_of(target)
    records = {r.sandbox_id: r.state for r in sdk.core.records()}
    with anyio.fail_after(30):  # a hang fails the test
        with pytest.raises(RockError) as info:
            await call(target, _HostNamed(sdk, host))
    assert type(info.value) is error
    assert str(info.value) == message.replace("{host}", host)
    # Nothing was sent that the agent would refuse: same link, same sandboxes, still working.
    assert link_of(target) is link and not link.closed
    assert target.state is SandboxState.RUNNING
    assert (await target.arun("echo still")).output == "still\n"
    now = {r.sandbox_id: r.state for r in sdk.core.records()}
    assert {k: v for k, v in now.items() if k in records} == records
    assert set(now) == set(records)  # no sandbox made (or forgotten) on the way


class _HostNamed(SandboxCluster):
    """The SDK cluster with "{host}" in a host id argument replaced by the real host id."""

    def __init__(self, sdk: SandboxCluster, host: str) -> None:
        super().__init__(sdk.core)
        self._host = host

    def drain_host(self, host_id: str, draining: bool = True) -> None:
        super().drain_host(host_id.replace("{host}", self._host), draining)
