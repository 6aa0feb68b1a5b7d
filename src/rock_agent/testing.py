"""Public fakes for testing code built on rock_agent, with no container engine.

- `FakeRuntime` is a `ContainerRuntime` whose sandboxes are folders on this host and whose
  processes are real local processes (see `_fake_runtime` for what it models and what not).
  The real `AgentServer` runs on it unchanged, sessions included.
- `check_runtime` is the conformance suite every `ContainerRuntime` passes: the fake and
  `DockerRuntime` alike, so the fake cannot drift from the real thing.

The agent side is asyncio-only (as `DockerRuntime` is).
"""

from __future__ import annotations

from ._conformance import CHECKS, check_runtime
from ._fake_runtime import FakeRuntime

__all__ = ["CHECKS", "FakeRuntime", "check_runtime"]
