"""Signals to one sandbox's processes: from the host when the kernel allows, else from inside.

The agent signals a sandbox's processes directly (`_procs`: microseconds). An agent that is not
root (a user in the docker group) may not: the processes run as root, so the kernel refuses
both the signal and a look at their environment (`EPERM`), and a command that times out would
never end. What the kernel refuses is done from inside the sandbox instead, by one small
`/bin/sh` script run through the runtime (`SCRIPT`: one exec, some 50 ms). That is only on the
rare path (timeouts, interrupts, closes); a command that ends normally never signals.

Rules:
- Processes are found from the host, which needs no privilege: the shell's tree, its
  sandbox's cgroup, start times (`_procs.candidates`). Only their marks (`ROCK_CMD`), when
  the kernel hides them, are read inside; what is learnt is kept per (pid, start time).
- A signal to a tree (the shell and what it runs) that the kernel refuses is sent inside to
  the tree as it is *then*: the script walks it in the sandbox's /proc, all of it before the
  first signal (a parent killed first would hand its children to init), so a loop's next
  child, started while the exec was on its way, is not missed.
- Inside, a process is named by its pid in the sandbox's pid namespace (the `NSpid:` field of
  `/proc/PID/status`, at the depth of the anchor's namespace) and its start time. The script
  finds each one in the sandbox's own /proc and checks its start time (a pid the sandbox
  reused is left alone); never pid 1, never itself.
- Only this sandbox: the script runs in the sandbox's pid namespace (it can reach no process
  outside it) and is given only processes found from this sandbox's anchor (its tree, its
  cgroup). A sandbox that shares the agent's pid namespace is never signalled from inside.
- A failure inside (no /bin/sh, a sandbox gone, an exec that does not answer within
  `INSIDE_TIMEOUT`) is logged and counts as nothing done; callers go on escalating.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

import anyio

from rock_core._errors import RockError

from . import _procs
from ._runtime import ContainerRuntime

log = logging.getLogger(__name__)

INSIDE_TIMEOUT = 10.0  # seconds for one exec of `SCRIPT`
CACHE_LIMIT = 4096  # marks kept per sandbox

# $1: `kill` or `marks`; $2: a signal name (`kill`); $3: a start time (trees, below); then
# items PID:START in the sandbox's pid namespace, each checked against the sandbox's /proc.
# `kill` signals each item, and for an item PID:START:+ (or :-) the process and (or only) its
# descendants started at or after $3; it prints the pids it signalled. `marks` prints, for each
# item that has one, `/proc/PID/environ:ROCK_CMD=<value>` and a NUL. Busybox ash and dash run it.
# Globbing stays on: the one glob is /proc/[0-9]*, and every unquoted expansion is digits.
SCRIPT = r"""op=$1 sig=$2 since=$3 files=
shift 3
look() {
    { read -r st </proc/"$1"/stat; } 2>/dev/null || return 1
    st=${st##*") "}
    set -- $st
    ppid=$2 start=${20}
}
for item; do
    p=${item%%:*} rest=${item#*:}
    t=${rest%%:*} tree=${rest#"$t"}
    case $p in ''|*[!0-9]*|0|1|"$$") continue ;; esac
    case $t in ''|*[!0-9]*) continue ;; esac
    look "$p" && [ "$start" = "$t" ] || continue
    if [ "$op" = marks ]; then
        files="$files /proc/$p/environ"
        continue
    fi
    targets=
    [ "$tree" = :- ] || targets=$p
    family=" $p " more=${tree:+1}
    while [ -n "$more" ]; do
        more=
        for f in /proc/[0-9]*; do
            c=${f#/proc/}
            case $family in *" $c "*) continue ;; esac
            look "$c" || continue
            case $family in *" $ppid "*)
                family="$family$c " more=1
                [ "$start" -lt "$since" ] || [ "$c" = "$$" ] || targets="$targets $c" ;;
            esac
        done
    done
    for c in $targets; do
        kill -s "$sig" "$c" 2>/dev/null && echo "$c"
    done
done
[ -z "$files" ] || exec grep -Haz '^ROCK_CMD=' $files 2>/dev/null
"""

RunInside = Callable[[list[str]], Awaitable[bytes]]


def exec_inside(runtime: ContainerRuntime, sandbox_id: str) -> RunInside:
    """Runs `SCRIPT` with the given arguments in one sandbox; returns what it printed."""

    async def run(args: list[str]) -> bytes:
        argv = ["/bin/sh", "-c", SCRIPT, "rock-signals", *args]
        process = await runtime.exec(sandbox_id, argv, stdin=False)
        out = bytearray()
        try:
            while (chunk := await process.read()) is not None:
                if chunk.stream == "stdout":
                    out += chunk.data
        finally:
            with anyio.CancelScope(shield=True):
                await process.aclose()
        return bytes(out)

    return run


class Signals:
    """Signals to the processes of the sandbox that `anchor` (a host pid) belongs to."""

    def __init__(self, run_inside: RunInside | None, anchor: int) -> None:
        self._run_inside = run_inside
        self.anchor = anchor
        self._marks: dict[tuple[int, int], bytes | None] = {}
        self.inside_runs = 0  # execs of `SCRIPT` so far

    async def command_pids(
        self, shell: int, mark: bytes, since: int, *, prefix: bool = False
    ) -> list[int]:
        """The processes a command of `shell` started at or after `since`: its descendants,
        and every process of the sandbox whose `ROCK_CMD` is `mark` (`prefix`: starts so)."""
        found, others = _procs.candidates(shell, since)
        hidden = []
        for pid in others:
            try:
                value = _procs.mark_of(pid)
            except PermissionError:
                hidden.append(pid)
                continue
            if matches(value, mark, prefix=prefix):
                found.append(pid)
        if hidden:
            marks = await self._marks_inside(hidden)
            found.extend(p for p in hidden if matches(marks.get(p), mark, prefix=prefix))
        return found

    async def send(
        self,
        sig: int,
        pids: Sequence[int] = (),
        *,
        tree: int = 0,
        include_root: bool = False,
        since: int = 0,
    ) -> None:
        """Send `sig` to the descendants of `tree` started at or after `since` (and to `tree`
        first if `include_root`), then to `pids`. All are host pids of this sandbox; pids 0,
        -1 and 1 are never signalled."""
        family = _procs.tree(tree, include_root=False, since=since)
        head = [tree] if include_root and tree > 1 else []
        rest = [p for p in pids if p != tree and p not in family]
        refused = _procs.signal_pids([*head, *family, *rest], sig)
        if not refused:
            return
        targets = []
        if tree > 1 and any(p == tree or p in family for p in refused):
            targets.append((tree, "+" if include_root else "-"))
        targets.extend((p, "") for p in refused if p in rest)
        name = signal.Signals(sig).name.removeprefix("SIG")
        await self._inside(["kill", name, str(since)], targets)

    async def _marks_inside(self, pids: list[int]) -> dict[int, bytes | None]:
        """The `ROCK_CMD` values of `pids`, read inside (None: none, or unknown)."""
        known: dict[int, bytes | None] = {}
        ask = []
        for pid in pids:
            start = _procs.start_time(pid)
            if start is None:
                continue  # gone
            if (pid, start) in self._marks:
                known[pid] = self._marks[(pid, start)]
            else:
                ask.append((pid, ""))
        answer = await self._inside(["marks", "-", "0"], ask)
        if answer is None:
            return known  # unknown: not the command's, this time
        values = parse_marks(answer.out)
        if len(self._marks) > CACHE_LIMIT:
            self._marks.clear()
        for pid, start in answer.asked:
            value = values.get(answer.names[pid])
            self._marks[(pid, start)] = known[pid] = value
        return known

    async def _inside(self, head: list[str], targets: list[tuple[int, str]]) -> Answer | None:
        """Run `SCRIPT head... items...` in the sandbox, an item per (host pid, tree flag)."""
        if self._run_inside is None or not targets:
            return None
        depth = len(_procs.ns_pids(self.anchor)) - 1
        if depth < 1:
            log.warning(
                "cannot signal %d process(es) of the sandbox of pid %d: the kernel refuses, "
                "and the sandbox has no pid namespace of its own",
                len(targets),
                self.anchor,
            )
            return None
        answer = Answer()
        items = []
        for pid, flag in targets:
            ns = _procs.ns_pids(pid)
            start = _procs.start_time(pid)
            if len(ns) > depth and ns[depth] > 1 and start is not None:
                answer.names[pid] = ns[depth]
                answer.asked.append((pid, start))
                items.append(f"{ns[depth]}:{start}" + (f":{flag}" if flag else ""))
        if not items:
            return None  # all gone
        self.inside_runs += 1
        try:
            with anyio.fail_after(INSIDE_TIMEOUT):
                answer.out = await self._run_inside([*head, *items])
        except (RockError, TimeoutError) as exc:
            log.warning("cannot %s processes from inside their sandbox: %s", head[0], exc)
            return None
        log.debug("%s %s in the sandbox of pid %d: %r", head[0], items, self.anchor, answer.out)
        return answer


class Answer:
    """What one run of `SCRIPT` was asked and printed."""

    def __init__(self) -> None:
        self.names: dict[int, int] = {}  # host pid: its pid in the sandbox
        self.asked: list[tuple[int, int]] = []  # (host pid, start time)
        self.out = b""


def parse_marks(out: bytes) -> dict[int, bytes]:
    """`SCRIPT marks` output as {pid in the sandbox: its `ROCK_CMD` value}."""
    found: dict[int, bytes] = {}
    for record in out.split(b"\0"):
        path, sep, entry = record.partition(b":")
        parts = path.strip(b"\n").split(b"/")  # b"", b"proc", b"PID", b"environ"
        if not sep or len(parts) != 4 or not parts[2].isdigit():
            continue
        value = _procs.value_of(entry, _procs.MARK)
        if value is not None:
            found.setdefault(int(parts[2]), value)
    return found


def matches(value: bytes | None, mark: bytes, *, prefix: bool) -> bool:
    """Whether a process's `ROCK_CMD` value is `mark` (`prefix`: starts with it)."""
    if value is None:
        return False
    return value.startswith(mark) if prefix else value == mark


__all__ = [
    "INSIDE_TIMEOUT",
    "SCRIPT",
    "Answer",
    "RunInside",
    "Signals",
    "exec_inside",
    "matches",
    "parse_marks",
]
