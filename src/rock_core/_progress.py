"""Progress of a long operation, for a caller's callback: `Progress` and its `ProgressReporter`.

    def show(p: Progress) -> None:
        print(f"{p.what}: {p.done}/{p.total} {p.unit}")

    await sandbox.upload("data/", "/work/data", progress=show)

Rules:
- A `progress=` argument is None or a callable taking one `Progress`; anything else is a
  `BadRequest` naming the argument (`check_progress`), raised before the operation starts.
- The callback is synchronous and is called from the operation's own task: it must be quick
  (draw a bar, store a number), never block.
- `done` never goes down, and `total` (None while unknown) is never below `done`.
- Calls are rate-limited: at most one per `interval` (0.1 s), whatever the number of events
  (a 16,000-sandbox `create_many` does not cost 16,000 calls), plus always the final call,
  where ``done == total``. A call that would say nothing new is not made.
- An exception the callback raises is logged once per operation (a warning on the
  ``rock_core.progress`` logger, with its traceback) and never breaks the operation; later
  calls still happen and are not logged again.
- The reporter reads time only through the `clock` it is given (tests pass a fake one).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import BadRequest

logger = logging.getLogger("rock_core.progress")

PROGRESS_INTERVAL = 0.1  # seconds between two calls of a callback, at least (the last excepted)


@dataclass(frozen=True, slots=True)
class Progress:
    """Where an operation stands: `done` of `total` `unit`s ("sandboxes", "bytes", "hosts"),
    `elapsed` seconds after it began. `what` names the operation ("upload", "create_many").
    `total` is None while it is not known (a download's size before its end)."""

    what: str
    unit: str
    done: int
    total: int | None
    elapsed: float

    @property
    def finished(self) -> bool:
        """True on the final call (``done == total``)."""
        return self.total is not None and self.done >= self.total

    @property
    def fraction(self) -> float | None:
        """`done` / `total` between 0 and 1, or None while the total is not known."""
        if self.total is None:
            return None
        return 1.0 if self.total == 0 else min(1.0, self.done / self.total)

    def __str__(self) -> str:
        total = "?" if self.total is None else str(self.total)
        return f"{self.what}: {self.done}/{total} {self.unit} ({self.elapsed:.1f} s)"


ProgressCallback = Callable[[Progress], object]
"""What a `progress=` argument takes: called with a `Progress`, its result ignored."""


def check_progress(value: object, what: str = "progress") -> ProgressCallback | None:
    """`value` if it is None or callable, else `BadRequest` naming the argument `what`."""
    if value is not None and not callable(value):
        raise BadRequest(
            f"{what} must be a callable taking a rock_sdk.Progress, or None, got {value!r}"
        )
    return value


class ProgressReporter:
    """Feeds one operation's progress to a callback under the module's rules.

    Call `update` as often as events happen (it decides when to call back), and `finish` once
    at the end (on success only: a failed operation raises instead of finishing). With no
    callback every method is a cheap no-op.
    """

    def __init__(
        self,
        callback: ProgressCallback | None,
        what: str,
        unit: str,
        total: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = PROGRESS_INTERVAL,
    ) -> None:
        self.callback = callback
        self.what = what
        self.unit = unit
        self.total = total
        self.done = 0
        self._clock = clock
        self._interval = interval
        self._began = clock()
        self._last_call: float | None = None
        self._last_said: tuple[int, int | None] | None = None
        self._logged = False

    def start(self) -> None:
        """The first call, with nothing done yet (so a bar shows its total at once)."""
        if self.callback is not None:
            self._call(self._clock())

    def update(self, done: int, total: int | None = None) -> None:
        """Now `done` units are done (a lower number than before is ignored); `total` if it
        became known. Calls back unless the last call was less than `interval` ago."""
        if self.callback is None:
            return
        self.done = max(self.done, done)
        if total is not None:
            self.total = total
        now = self._clock()
        if self._last_call is not None and now - self._last_call < self._interval:
            return
        self._call(now)

    def advance(self, by: int) -> None:
        """`by` more units are done."""
        self.update(self.done + by)

    def finish(self, total: int | None = None) -> None:
        """The operation is complete: the final call, with ``done == total`` (`total`, if
        given, else the known total, else what was done)."""
        if self.callback is None:
            return
        if total is not None:
            self.total = total
        self.total = self.done = max(self.done, self.total if self.total is not None else 0)
        self._call(self._clock())

    def _call(self, now: float) -> None:
        assert self.callback is not None
        total = None if self.total is None else max(self.total, self.done)
        said = (self.done, total)
        if said == self._last_said:
            return
        self._last_said = said
        self._last_call = now
        progress = Progress(self.what, self.unit, self.done, total, max(0.0, now - self._began))
        try:
            self.callback(progress)
        except Exception:
            if not self._logged:
                self._logged = True
                logger.warning(
                    "the progress callback %r of %s raised; the %s goes on without it "
                    "(this is logged once)",
                    self.callback,
                    self.what,
                    self.what,
                    exc_info=True,
                )


__all__ = [
    "PROGRESS_INTERVAL",
    "Progress",
    "ProgressCallback",
    "ProgressReporter",
    "check_progress",
]
