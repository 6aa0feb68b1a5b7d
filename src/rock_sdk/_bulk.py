"""`create_many`: start many sandboxes of one config with bounded concurrency and progress.

Each sandbox is an ordinary create through the cluster (placement, start caps, queue); one
failure does not stop the others. The result lists what started, in request order, and a
clear error for each sandbox that did not; nothing is raised for a partial failure unless
``check=True`` (then the ones that started are deleted: all or nothing).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO, cast

import anyio

from rock_core import (
    BadRequest,
    Cluster,
    ProgressCallback,
    ProgressReporter,
    RockError,
    delete_quietly,
    new_sandbox_id,
)

from . import _arguments as args
from ._config import SandboxConfig
from ._sandbox import Sandbox

WAITS_COALESCE = 0.1  # seconds between two looks at the creates waiting for room


@dataclass(frozen=True, slots=True)
class CreateProgress:
    """Where a `create_many` stands: `started` and `failed` of `total`, `elapsed` seconds in,
    and how many of its creates are `waiting` for room on a host now."""

    total: int
    started: int
    failed: int
    elapsed: float
    waiting: int = 0

    @property
    def done(self) -> int:
        """Creates finished either way."""
        return self.started + self.failed

    @property
    def rate(self) -> float:
        """Sandboxes started per second so far."""
        return self.started / self.elapsed if self.elapsed > 0 else 0.0

    def __str__(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        waiting = f", waiting for room: {self.waiting}" if self.waiting else ""
        return (
            f"{self.started}/{self.total} sandboxes started{failed}{waiting} "
            f"({self.rate:.1f}/s, {self.elapsed:.1f} s)"
        )


@dataclass(frozen=True, slots=True)
class CreateFailure:
    """One sandbox of a `create_many` that did not start: its position, id and error."""

    index: int
    sandbox_id: str
    error: RockError

    def __str__(self) -> str:
        return f"#{self.index} ({self.sandbox_id}): {type(self.error).__name__}: {self.error}"


@dataclass(frozen=True, slots=True)
class CreateManyResult:
    """What `create_many` started (`sandboxes`, in request order) and what failed, and why."""

    sandboxes: list[Sandbox]
    failures: list[CreateFailure]
    elapsed: float

    @property
    def ok(self) -> bool:
        """True when every sandbox started."""
        return not self.failures

    def raise_on_failure(self) -> None:
        """Raise the first failure's error (with a note summing up the rest), if any failed."""
        if not self.failures:
            return
        first = self.failures[0].error
        total = len(self.sandboxes) + len(self.failures)
        first.add_note(f"{len(self.failures)} of {total} sandboxes failed to start:")
        for failure in self.failures[:10]:
            first.add_note(f"  {failure}")
        if len(self.failures) > 10:
            first.add_note(f"  ... and {len(self.failures) - 10} more")
        raise first


class _ProgressLine:
    """One line on a terminal, rewritten in place; elsewhere a line per tenth of the work."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.shown: tuple[int, int] = (-1, -1)  # (tenth of the work done, waiting)

    def show(self, progress: CreateProgress) -> None:
        text = f"create_many: {progress}"
        if self.tty:
            end = "\n" if progress.done == progress.total else ""
            self.stream.write(f"\r{text}\x1b[K{end}")
        else:
            shown = (progress.done * 10 // max(progress.total, 1), progress.waiting)
            if shown == self.shown:
                return
            self.shown = shown
            self.stream.write(text + "\n")
        self.stream.flush()


def _configs(
    config: SandboxConfig | Sequence[SandboxConfig] | None, n: int | None
) -> list[SandboxConfig]:
    """One config per sandbox, each checked: a bad config fails once, before anything starts."""
    if isinstance(config, SandboxConfig) or config is None:
        configs = [config or SandboxConfig()] * args.count(n, "n", 0)
    else:
        configs = args.strings(config, "config", "[SandboxConfig(...), ...]")
        wrong = [c for c in configs if not isinstance(c, SandboxConfig)]
        if wrong:
            raise BadRequest(
                f"config must be a SandboxConfig or a list of them, got {wrong[0]!r} in it"
            )
        if n is not None and n != len(configs):
            raise BadRequest(f"n={n!r} but {len(configs)} configs were given")
    for checked in {id(c): c for c in configs}.values():
        checked.to_spec()
    return configs


def _default_concurrency(cluster: Cluster) -> int:
    """Enough creates in flight to fill every host's start slots, no more."""
    stats = cluster.scheduler.statistics()
    return max(1, sum(host.max_starts for host in stats.hosts if not host.draining))


async def create_many(
    cluster: Cluster,
    config: SandboxConfig | Sequence[SandboxConfig] | None,
    n: int | None = None,
    *,
    concurrency: int | None = None,
    sandbox_ids: Sequence[str] | None = None,
    on_progress: Callable[[CreateProgress], object] | None = None,
    progress: bool | TextIO | ProgressCallback = False,
    check: bool = False,
) -> CreateManyResult:
    """Start `n` sandboxes of `config` (or one per config of a list), `concurrency` at once.

    - `concurrency`: default, the start slots of the cluster's hosts (8 per host by default).
    - `sandbox_ids`: one id per sandbox, making the whole call idempotent: a retry returns the
      same sandboxes (`config.sandbox_id` must then be empty).
    - `on_progress(CreateProgress)` is called after each create finishes, and when the number
      of its creates waiting for room changes; `progress=True` writes a progress line to
      stderr (or to the stream given). A create waits for room at most its config's
      `startup_timeout` (default: the cluster's `queue_timeout`), then fails with
      `CapacityError`. A callable `progress` gets a `rock_sdk.Progress` (unit "sandboxes",
      `done` counting the failed ones too) at most ten times a second, and at the end.
    - `check`: raise the first failure (its note lists the others) after deleting the
      sandboxes that started, instead of returning a partial result.

    Cancelling the call deletes the sandboxes it started.
    """
    configs = _configs(config, n)
    n = len(configs)
    args.callback(on_progress, "on_progress", "a CreateProgress")
    args.flag(check, "check")
    callback = progress if callable(progress) else None
    if callback is None and not isinstance(progress, bool):
        if not callable(getattr(progress, "write", None)):
            raise BadRequest(
                "progress must be True, False, a text stream or a callable taking a "
                f"rock_sdk.Progress, got {progress!r}"
            )
    if sandbox_ids is not None:
        ids = args.strings(sandbox_ids, "sandbox_ids", "['sb-1', 'sb-2']")
        if len(ids) != n:
            raise BadRequest(f"sandbox_ids has {len(ids)} ids for {n} sandboxes")
        if len(set(ids)) != n:
            raise BadRequest("sandbox_ids has duplicates: each sandbox needs its own id")
        if any(c.sandbox_id for c in configs):
            raise BadRequest("give the ids either as config.sandbox_id or as sandbox_ids, not both")
    else:
        ids = [c.sandbox_id or new_sandbox_id() for c in configs]
        if len(set(ids)) != n:
            raise BadRequest(
                "config.sandbox_id names one sandbox, not several: pass sandbox_ids=[...]"
            )
    limit = (
        _default_concurrency(cluster)
        if concurrency is None
        else args.count(concurrency, "concurrency", 1)
    )
    line = None
    if progress is True:
        line = _ProgressLine(sys.stderr)
    elif progress and callback is None:
        line = _ProgressLine(cast(TextIO, progress))
    reporter = ProgressReporter(callback, "create_many", "sandboxes", n)

    started: dict[int, Sandbox] = {}
    failed: dict[int, CreateFailure] = {}
    began = time.monotonic()
    limiter = anyio.CapacityLimiter(limit)

    waiting = 0
    mine = set(ids)

    def report() -> None:
        nonlocal waiting
        reporter.update(len(started) + len(failed))
        if on_progress is None and line is None:
            return
        waiting = min(waiting, n - len(started) - len(failed))  # the watcher may lag behind
        now = CreateProgress(n, len(started), len(failed), time.monotonic() - began, waiting)
        if line is not None:
            line.show(now)
        if on_progress is not None:
            on_progress(now)

    async def one(index: int) -> None:
        async with limiter:
            sandbox = Sandbox(configs[index], cluster=cluster, sandbox_id=ids[index])
            try:
                await sandbox.start()
            except RockError as exc:
                failed[index] = CreateFailure(index, ids[index], exc)
            else:
                started[index] = sandbox
        report()

    async def watch_waits() -> None:
        """Report whenever the number of this call's creates waiting for room changes."""
        nonlocal waiting
        while True:
            now = len(mine & cluster.waits.waiting)
            if now != waiting:
                waiting = now
                report()
            await cluster.waits.changed()
            await anyio.sleep(WAITS_COALESCE)  # one report for a burst of changes

    reporter.start()
    try:
        async with anyio.create_task_group() as outer:
            if on_progress is not None or line is not None:
                outer.start_soon(watch_waits)
            async with anyio.create_task_group() as tg:
                for index in range(n):
                    tg.start_soon(one, index)
            outer.cancel_scope.cancel()
    except BaseException:
        await _delete_all(cluster, started.values(), limit)
        raise
    result = CreateManyResult(
        sandboxes=[started[i] for i in sorted(started)],
        failures=[failed[i] for i in sorted(failed)],
        elapsed=time.monotonic() - began,
    )
    if check and not result.ok:
        await _delete_all(cluster, result.sandboxes, limit)
        result.raise_on_failure()
    reporter.finish()
    return result


async def _delete_all(cluster: Cluster, sandboxes: Iterable[Sandbox], limit: int) -> None:
    """Delete what a failed or cancelled call started: shielded, bounded, best effort (the
    cluster deletes what is left when it exits)."""
    ids = [sandbox.sandbox_id for sandbox in sandboxes]
    await delete_quietly(cluster, ids, who="create_many", limit=limit)


__all__ = ["CreateFailure", "CreateManyResult", "CreateProgress", "create_many"]
