"""Progress bars of the `rock` commands that take a while (`cp`, `images warm`), on stderr.

    with progress_bar(quiet=quiet, at_least=BIG_TRANSFER) as progress:
        await _transfer.upload(conn, sandbox_id, local, remote, progress)

A bar is rich's `Progress` (done of total, rate and ETA for bytes), driven by the library's
`progress=` callback: the CLI shows exactly what a library user gets.

Rules:
- A bar is drawn only when stderr is a terminal and `--quiet` was not given. Otherwise the
  callback is None and the command prints nothing more than without a bar.
- Nothing is ever written to stdout (rich's stdout redirection is off), so a command's
  output stays the exact bytes it was.
- A bar appears only once its work reaches `at_least` units (total or done, for a download
  whose total is unknown): a small copy shows none. It is transient: cleared when the
  command ends, leaving the command's own one-line summary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as Bars

from rock_core import Progress, ProgressCallback

BIG_TRANSFER = 4 << 20  # bytes: smaller copies get no bar

NoBar = Annotated[bool, typer.Option("-q", "--quiet", help="no progress bar on stderr")]


def _columns(unit: str) -> list[ProgressColumn]:
    counts: list[ProgressColumn] = (
        [DownloadColumn(), TransferSpeedColumn()]
        if unit == "bytes"
        else [MofNCompleteColumn(), TextColumn(unit)]
    )
    return [
        TextColumn("{task.description}"),
        BarColumn(),
        *counts,
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]


class _Bar:
    """The callback: starts the rich display at the first `Progress` worth showing."""

    def __init__(self, console: Console, at_least: int) -> None:
        self.console = console
        self.at_least = at_least
        self.bars: Bars | None = None
        self.task: TaskID | None = None

    def __call__(self, progress: Progress) -> None:
        if self.bars is None:
            if max(progress.done, progress.total or 0) < self.at_least or progress.finished:
                return
            self.bars = Bars(
                *_columns(progress.unit),
                console=self.console,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.bars.start()
            self.task = self.bars.add_task(progress.what, total=progress.total)
        assert self.task is not None
        self.bars.update(self.task, completed=progress.done, total=progress.total)

    def close(self) -> None:
        if self.bars is not None:
            self.bars.stop()


@contextlib.contextmanager
def progress_bar(*, quiet: bool = False, at_least: int = 0) -> Iterator[ProgressCallback | None]:
    """A `progress=` callback drawing a bar on stderr, or None where no bar is wanted (see
    the module's rules); the bar is cleared when the block ends."""
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield None
        return
    bar = _Bar(console, at_least)
    try:
        yield bar
    finally:
        bar.close()


__all__ = ["BIG_TRANSFER", "NoBar", "progress_bar"]
