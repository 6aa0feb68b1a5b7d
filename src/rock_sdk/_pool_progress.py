"""A pool's fill with progress: `Pool.wait_ready(count, progress=...)`.

Rules:
- The wait itself is the core's (`RecordPool.wait_ready`: its target, its errors, raised as
  they are, never in an exception group); beside it, a watcher looks at the pool's `ready`
  count every `POLL` seconds and reports it (unit "sandboxes", `total` the count waited for).
  The last call, once the wait is over, has ``done == total``.
- A bad `count` or `progress` is a `BadRequest` before anything is reported.
- The ready count can drop (a member handed out meanwhile); `done` never goes down.
"""

from __future__ import annotations

import anyio

from rock_core import ProgressCallback, ProgressReporter, RecordPool, check_progress

from . import _arguments as args
from ._streamed import one_error

POLL = 0.1  # seconds between two looks at the ready count (the reporter's rate, too)


async def wait_ready_reporting(
    core: RecordPool, count: int | None, progress: ProgressCallback | None
) -> None:
    """`core.wait_ready(count)`, telling `progress` how many members are ready as they come."""
    want = core.min_size if count is None else args.count(count, "count", 0)
    reporter = ProgressReporter(check_progress(progress), "pool fill", "sandboxes", want)
    reporter.start()

    async def watch() -> None:
        while True:
            await anyio.sleep(POLL)
            reporter.update(min(want, core.statistics().ready))

    with one_error():
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await core.wait_ready(want)
            tg.cancel_scope.cancel()
    reporter.finish()


__all__ = ["POLL", "wait_ready_reporting"]
