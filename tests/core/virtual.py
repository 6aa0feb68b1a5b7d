"""Virtual time for the tests of the core's drivers (cluster, pools, fake agents).

The core reads time only through anyio (`anyio.current_time`, `anyio.sleep`, `move_on_after`),
so under trio's `MockClock` with ``autojump_threshold=0`` every wait ends as soon as nothing else
can run: a test of grace periods, backoff or shrink timers takes milliseconds, and what it
asserts about time is exact. Use it in a test module with::

    from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, on trio)

The logic is backend-neutral; asyncio is covered by the integration tests.
"""

from __future__ import annotations

from typing import Any

import pytest
from trio.testing import MockClock


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": MockClock(autojump_threshold=0)})


__all__ = ["anyio_backend"]
