"""The conformance check of a cancelled create: it leaves nothing behind.

Rules (those of `_conformance`, whose `CHECKS` holds this too):
- A create cancelled at any point, before, during or after the engine made its container, has
  left no sandbox once it returns, nor after the engine settles (an engine carries out a
  request it got: what it made for a caller gone meanwhile must be removed by the runtime,
  never left for a reaper that may list before the engine is done).
- The cancels are spread over one uncancelled create's time; a create that finished before
  its cancel is simply removed. The time is used to place the cancels, never checked.
"""

from __future__ import annotations

import time

import anyio

from ._conformance_kit import OWNER, STEP_TIMEOUT, check, new_id, spec
from ._runtime import ContainerRuntime

FRACTIONS = (0.0, 0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9)  # of a create's time, to cancel at
SETTLE = 1.0  # seconds an engine gets to make what a cancelled create had asked for


async def _listed(runtime: ContainerRuntime, ids: set[str]) -> set[str]:
    return {info.sandbox_id for info in await runtime.list_sandboxes()} & ids


async def check_cancelled_create(runtime: ContainerRuntime, image: str) -> None:
    """A create cancelled anywhere on its way leaves no sandbox (module rules)."""
    whole = new_id("whole")
    ids = {whole}
    try:
        began = time.monotonic()
        with anyio.fail_after(STEP_TIMEOUT):
            await runtime.create(whole, spec(image), OWNER, runtime.uid)
        took = time.monotonic() - began
        await runtime.remove(whole)
        for fraction in FRACTIONS:
            sandbox_id = new_id("cancelled")
            ids.add(sandbox_id)
            made = False
            with anyio.fail_after(STEP_TIMEOUT), anyio.move_on_after(took * fraction):
                await runtime.create(sandbox_id, spec(image), OWNER, runtime.uid)
                made = True
            if made:
                await runtime.remove(sandbox_id)
                continue
            left = await _listed(runtime, {sandbox_id})
            check(not left, f"a create cancelled after {fraction:.0%} of its time left {left}")
        await anyio.sleep(SETTLE)
        left = await _listed(runtime, ids)
        check(not left, f"creates cancelled on their way were made later: {sorted(left)}")
    finally:
        with anyio.CancelScope(shield=True):
            for sandbox_id in ids:
                await runtime.remove(sandbox_id)


__all__ = ["check_cancelled_create"]
