"""A pool's fill with progress: `Pool.wait_ready(count, progress=...)`.

Rules:
- The wait itself is the core's (`RecordPool.wait_ready`: its target, its errors); this module
  only looks at the pool's `ready` count between waits of at most `POLL` seconds and reports
  it (unit "sandboxes", `total` the count waited for), ending with ``done == total``.
- A bad `count` or `progress` is a `BadRequest` before anything is reported.
- The ready count can drop (a member handed out meanwhile); `done` never goes down.
"""

from __future__ import annotations

import anyio

from rock_core import ProgressCallback, ProgressReporter, RecordPool, check_progress

from . import _arguments as args

POLL = 0.1  # seconds between two looks at the ready count (the reporter's rate, too)


async def wait_ready_reporting(
    core: RecordPool, count: int | None, progress: ProgressCallback | None
) -> None:
    """`core.wait_ready(count)`, telling `progress` how many members are ready as they come."""
    want = core.min_size if count is None else args.count(count, "count", 0)
    reporter = ProgressReporter(check_progress(progress), "pool fill", "sandboxes", want)
    reporter.start()
    while True:
        with anyio.move_on_after(POLL):
            await core.wait_ready(want)
            break
        reporter.update(min(want, core.statistics().ready))
    reporter.finish()


__all__ = ["POLL", "wait_ready_reporting"]
