"""Integration tests against real third-party packages (the optional extras).

`.ci/run` installs every extra and sets ROCK_REQUIRE_EXTRAS=1, so there a missing package is
a failure, never a skip. Elsewhere a test whose package is absent is skipped with the install
command in its reason.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

# Ray 2.60 turns on token auth for a cluster that `ray start` makes when ~/.ray/auth_token
# exists (any local `ray.init()` on this machine writes one), and the tests' own clients then
# cannot connect. The test clusters are on loopback and torn down by their tests: no auth, for
# them and every process they start.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or skip (fail under ROCK_REQUIRE_EXTRAS=1) naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        reason = f"{module} is not installed: pip install '.[{extra}]' from a clone ({exc})"
        if os.environ.get("ROCK_REQUIRE_EXTRAS") == "1":
            pytest.fail(reason)
        pytest.skip(reason, allow_module_level=True)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"
