"""What every `rock` command shares: the exit-code table, errors, Ctrl-C, typos, ids by prefix.

Rules:
- `ExitCode` is the one exit-code table (docs/cli.md shows it): 0 ok; `run`/`exec` exit with
  the command's own code; 124 the command timed out; 125 rock failed (bad input, engine down,
  not found, ...); 130 interrupted. No command exits with anything else.
- A failure is said once, on one line on stderr (``rock CMD: what went wrong``), from our
  exception tree (`RockError`); usage errors of the parser are said the same way. The kit's
  log shows on stderr as ``rock: ...`` (warnings and up, or ``$ROCK_LOG_LEVEL``); an error
  logged with the very error the command reports is not shown again.
- Every command's body is an async function run by `run_async`. With ``interruptible``, Ctrl-C
  (or SIGTERM) cancels only the innermost `Interrupts.cancels` scope, so cleanup (removing a
  sandbox, closing sessions) still runs, and the command exits 130.
- A sandbox id may be given by a unique prefix, as docker allows (`resolve_ids`), across every
  host of the cluster `open_admin` reaches (see `_cli_config`).
- A mistyped command gets the nearest commands suggested (typer's groups do it, with difflib).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, BinaryIO

import anyio
import typer

from rock_core import BadRequest, Cluster, RockError, open_admin_cluster

from . import _cli_config


class ExitCode(enum.IntEnum):
    """The one exit-code table of `rock` (`run` and `exec` also exit with the command's code)."""

    OK = 0
    TIMED_OUT = 124  # the command ran out of its --timeout
    FAILED = 125  # rock failed: bad input, engine down, not found, ...
    INTERRUPTED = 130  # Ctrl-C


def new_typer(help_text: str) -> typer.Typer:
    """A command group of `rock`: ``-h``, no completion options of its own (the root has them)."""
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
    )


def say_error(where: str, message: str) -> None:
    """Say a failure on one line of stderr, ``rock CMD: message`` (in red on a terminal)."""
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.text import Text

        line = Text(f"{where}: ", style="bold red") + Text(message)
        Console(stderr=True, highlight=False, soft_wrap=True).print(line)
        return
    print(f"{where}: {message}", file=sys.stderr, flush=True)


def emit(stream: BinaryIO, data: bytes) -> bool:
    """Write `data` and flush; False if the reader has gone (`| head`): the stream then points
    at /dev/null, so what is still buffered cannot fail the exit either."""
    try:
        stream.write(data)
        stream.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
        return False
    return True


def fail(ctx: typer.Context, message: str) -> typer.Exit:
    """Say `message` as `ctx`'s command's failure; raise the returned `typer.Exit`."""
    say_error(ctx.command_path, message)
    return typer.Exit(ExitCode.FAILED)


class Interrupts:
    """Ctrl-C for a command: it cancels the innermost scope entered with `cancels`."""

    def __init__(self) -> None:
        self.hit = False
        self._scopes: list[anyio.CancelScope] = []

    @contextlib.contextmanager
    def cancels(self) -> Iterator[None]:
        """A scope that a Ctrl-C cancels (the code after the block still runs)."""
        with anyio.CancelScope() as scope:
            self._scopes.append(scope)
            try:
                yield
            finally:
                self._scopes.remove(scope)

    def fire(self) -> None:
        """Cancel the innermost scope (as a Ctrl-C does)."""
        self.hit = True
        if self._scopes:
            self._scopes[-1].cancel()


async def _interruptible(body: Callable[[Interrupts], Awaitable[int]]) -> int:
    interrupts = Interrupts()
    outcome = int(ExitCode.FAILED)
    failure: RockError | None = None
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                async for _ in signals:
                    interrupts.fire()

            async def run() -> None:
                nonlocal outcome, failure
                try:
                    with interrupts.cancels():
                        outcome = await body(interrupts)
                except RockError as exc:
                    failure = exc  # said by `_run`, as a command without Ctrl-C says it
                finally:
                    tg.cancel_scope.cancel()

            tg.start_soon(watch)
            tg.start_soon(run)
    if failure is not None:
        raise failure
    return int(ExitCode.INTERRUPTED) if interrupts.hit else outcome


def run_async(ctx: typer.Context, body: Callable[[], Awaitable[int | None]]) -> None:
    """Run a command's async body and exit with its code (see the module's rules)."""

    async def main() -> int:
        return (await body()) or 0

    _run(ctx, main)


def run_interruptible(ctx: typer.Context, body: Callable[[Interrupts], Awaitable[int]]) -> None:
    """Like `run_async`, for a body that lets Ctrl-C cancel only part of it (exits 130)."""
    _run(ctx, lambda: _interruptible(body))


_running: list[str] = []  # the command running now (`rock ps`), for messages said on its way


def _run(ctx: typer.Context, main: Callable[[], Awaitable[int]]) -> None:
    where = ctx.command_path
    code = int(ExitCode.FAILED)
    _running.append(where)
    with _logging_to_stderr() as log, contextlib.ExitStack() as stack:
        stack.callback(_running.pop)
        reported: RockError | None = None
        try:
            code = anyio.run(main)
        except RockError as exc:
            reported = exc
            log.show_held(reported)
            say_error(where, str(exc))
        except KeyboardInterrupt:
            code = ExitCode.INTERRUPTED
        except BrokenPipeError:
            # The reader left (`rock ps | head -1`): what it read is all it wanted.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = ExitCode.OK
        finally:
            log.show_held(reported)
    if code:
        raise typer.Exit(code)


@contextlib.asynccontextmanager
async def open_admin() -> AsyncIterator[Cluster]:
    """The cluster the commands act on (`_cli_config`: ``--hosts``, ``$ROCK_HOSTS``, the
    config file, else this host's engine), any owner's sandboxes. A host that does not answer
    is named on stderr and left out; if none answers, its failure is the command's."""
    config = _cli_config.config()
    async with open_admin_cluster(_cli_config.hosts(), ssh=config.ssh) as cluster:
        for address, error in cluster.unreachable.items():
            say_error(
                _running[-1] if _running else "rock",
                f"host {address} is not reachable, left out: {error}",
            )
        yield cluster


async def resolve_ids(cluster: Cluster, given: Sequence[str]) -> list[str]:
    """Full sandbox ids for ids or unique prefixes (docker's rule: an exact id always wins).

    A prefix of several ids is a `BadRequest` naming them; one of none is kept as given, so
    the command's own lookup reports it (with any unreachable host).
    """
    known = [info.sandbox_id for info in await cluster.list_host_sandboxes()]
    return [_resolve(known, wanted) for wanted in given]


def _resolve(known: Sequence[str], wanted: str) -> str:
    if not wanted:  # a prefix of every id: never let it pick the only sandbox there is
        raise BadRequest("the sandbox id is empty: give an id or a unique prefix of one")
    if wanted in known:
        return wanted
    matches = sorted(i for i in known if i.startswith(wanted))
    if len(matches) > 1:
        raise BadRequest(
            f"sandbox id prefix {wanted!r} is ambiguous: it matches {', '.join(matches)}"
        )
    return matches[0] if matches else wanted


def key_values(pairs: Sequence[str], option: str) -> dict[str, str]:
    """``KEY=VALUE`` options as a dict; `BadRequest` naming `option` for a malformed one."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadRequest(f"{option} wants KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


class _Log(logging.Handler):
    """The kit's log on stderr. An error record about a `RockError` waits for the command's
    end: if the command reports that same error, it is not said twice."""

    def __init__(self, level: int | str) -> None:
        super().__init__(level)
        self.setFormatter(logging.Formatter("rock: %(message)s"))
        self._held: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR and _errors_of(record):
            self._held.append(record)
            return
        self._write(record)

    def show_held(self, reported: BaseException | None) -> None:
        """Show the held records, but those about `reported` (the command says it itself)."""
        held, self._held = self._held, []
        for record in held:
            if not any(error is reported for error in _errors_of(record)):
                self._write(record)

    def _write(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)


def _errors_of(record: logging.LogRecord) -> list[RockError]:
    args: Any = record.args if isinstance(record.args, tuple) else ()
    return [arg for arg in args if isinstance(arg, RockError)]


@contextlib.contextmanager
def _logging_to_stderr() -> Iterator[_Log]:
    level = os.environ.get("ROCK_LOG_LEVEL", "WARNING").upper()
    handler = _Log(level if level in logging.getLevelNamesMapping() else "WARNING")
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(min(saved or logging.WARNING, handler.level))
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)
