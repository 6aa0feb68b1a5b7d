"""Virtual time for the tests of the core's drivers (cluster, pools, fake agents), on both backends.

Rules:
- The core reads time only through anyio (`anyio.current_time`, `anyio.sleep`, `move_on_after`),
  so in virtual time every wait ends as soon as nothing else can run: a test of grace periods,
  backoff or shrink timers takes milliseconds, and what it asserts about time is exact.
- Every test that uses this fixture runs twice, with ids ``[trio]`` and ``[asyncio]``: on trio
  under `MockClock(autojump_threshold=0)`, and on asyncio under `VirtualTimeEventLoop`, which
  jumps the same way. Asyncio is the users' default and its cancel and shield paths differ, so
  neither backend stands in for the other.
- Each test gets a fresh clock at 0.0.

Use it in a test module with::

    from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)
"""

from __future__ import annotations

from typing import Any

import pytest
from trio.testing import MockClock

from tests.virtual_loop import VirtualTimeEventLoop


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    if request.param == "trio":
        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return ("asyncio", {"loop_factory": VirtualTimeEventLoop})


__all__ = ["anyio_backend"]
