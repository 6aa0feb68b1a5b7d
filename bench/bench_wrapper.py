"""Benchmark: what each piece of a session's per-command wrapper costs, in a local shell.

No Docker and no agent: the session shell (`_wrap.BOOT`, set up by `_wrap.setup`) runs as a
child of this process on plain pipes, and each side writes one command line and reads until
its end line, interleaved round by round. The sides add the wrapper's pieces one at a time:

- ``bare``: ``echo hi`` and an end line, both to the kit's fd, nothing else;
- ``+ redirects``: the command with the wrapper's redirections (stdin from /dev/null, the
  kit's fd closed for it) and the kit's `printf` end line with its status;
- ``+ start line``: the kit's `printf` start line before it;
- ``+ here-doc .``: the text sourced by `.` from a here-document instead of run directly;
- ``wrapper``: the exact bytes the agent writes (`_wrap.wrap`), which add the command's
  variables, the `ROCK_CMD` export and the kit's RETURN trap at the `.`'s end.

With ``--baseline DIR`` (a tree's ``src``, say ``/work/main/src``), that tree's
``rock_agent/_wrap.py`` runs too, in a shell of its own booted and set up its way, with its
``bare`` and ``wrapper`` sides interleaved with this tree's: the before and after of a change
in one run.

Run: ``python bench/bench_wrapper.py [--rounds N] [--baseline DIR]`` (bash when the machine
has it, as in a session; ``PATH`` with busybox only measures ash); prints p50 and p90 per
side, each piece's p50 over the side before it, each shell's wrapper over its bare command,
and the load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from _stats import median, percentile, print_table

from rock_agent import _wrap

Side = Callable[[bytes], bytes]  # marker -> the line to write


def sides(wrap: ModuleType, bash: bool, *, pieces: bool = True) -> dict[str, Side]:
    """The command lines, from the bare command to `wrap`'s wrapper."""
    word = b"\\builtin" if bash else b"\\command"
    end = word + b' printf \'%s%d\\n\' "$__rock_m" "$?" >&63\n'
    redirect = b" >&63 2>&63 </dev/null 63>&-; "
    start = word + b" printf '%ss\\n' \"$__rock_m\" >&63; "

    def head(marker: bytes) -> bytes:
        return b"__rock_m='" + marker + b"'; "

    found: dict[str, Side] = {"bare": lambda m: b"echo hi >&63; echo '" + m + b"0' >&63\n"}
    if pieces:
        found["+ redirects"] = lambda m: head(m) + b"echo hi" + redirect + end
        found["+ start line"] = lambda m: head(m) + start + b"echo hi" + redirect + end
        if bash:
            found["+ here-doc ."] = lambda m: (
                head(m) + start + b"\\. /dev/fd/3 3<<__rock_eof" + redirect + end + b"echo hi\n"
                b"__rock_eof\n"
            )
    found["wrapper"] = lambda m: wrap.wrap("echo hi", m, "bench-1", interactive=False, bash=bash)
    return found


def load_wrap(src: Path) -> ModuleType:
    """`rock_agent/_wrap.py` of another tree, as a module of its own."""
    path = src / "rock_agent" / "_wrap.py"
    spec = importlib.util.spec_from_file_location("baseline_wrap", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"no {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LocalShell:
    """The session shell of `wrap` as a child process on pipes, set up as the agent does."""

    def __init__(self, wrap: ModuleType) -> None:
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", wrap.BOOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.fd_in, self.fd_out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self.buffer = bytearray()
        ready = _wrap.new_marker()
        status, _, _ = self.run(wrap.setup(ready), ready)
        self.bash = status == 10

    def run(self, data: bytes, marker: bytes) -> tuple[int, bytes, bool]:
        """Write `data`, read to `marker`'s end line: (status, output after the start line,
        whether there was a start line)."""
        os.write(self.fd_in, data)
        while (found := _wrap.find_end(self.buffer, [marker])) is None:
            chunk = os.read(self.fd_out, 65536)
            if not chunk:
                raise RuntimeError(f"the shell ended: {bytes(self.buffer)!r}")
            self.buffer += chunk
        start = _wrap.find_start(self.buffer, marker)
        out = bytes(self.buffer[max(0, start) : found[1]])
        del self.buffer[: found[3]]
        return found[2], out, start >= 0

    def close(self) -> None:
        """End the shell."""
        self.proc.kill()
        self.proc.wait()


def main() -> int:
    """Run the sides interleaved and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--baseline", type=Path, default=None, help="another tree's src")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    modules = {"": _wrap}
    if args.baseline is not None:
        modules["baseline "] = load_wrap(args.baseline)
    shells = {prefix: LocalShell(module) for prefix, module in modules.items()}
    try:
        all_sides: dict[str, tuple[LocalShell, Side]] = {}
        for prefix, shell in shells.items():
            for name, side in sides(modules[prefix], shell.bash, pieces=not prefix).items():
                all_sides[prefix + name] = (shell, side)
        times: dict[str, list[float]] = {k: [] for k in all_sides}
        for n in range(args.warmup + args.rounds):
            for name, (shell, side) in all_sides.items():
                marker = _wrap.new_marker()
                data = side(marker)
                started = time.perf_counter()
                status, out, started_line = shell.run(data, marker)
                elapsed = time.perf_counter() - started
                assert (status, out) == (0, b"hi\n"), (name, status, out)
                assert started_line == (not name.endswith(("bare", "redirects"))), name
                if n >= args.warmup:
                    times[name].append(elapsed)
    finally:
        for shell in shells.values():
            shell.close()
    print(f"load average after: {os.getloadavg()}")
    rows, previous = [], None
    for name, values in times.items():
        p50 = median(values) * 1e3
        step = "" if previous is None or name.endswith("bare") else f"{p50 - previous:+.3f}"
        rows.append([name, p50, percentile(values, 90) * 1e3, step])
        previous = p50
    shell_name = "bash" if shells[""].bash else "sh"
    print_table(
        f"per-command wrapper pieces, local {shell_name}, {args.rounds} rounds, ms",
        ["side", "p50", "p90", "p50 over the row above"],
        rows,
    )
    for prefix in shells:
        over = median(times[prefix + "wrapper"]) - median(times[prefix + "bare"])
        print(f"{prefix or 'this tree '}wrapper over bare: {over * 1e3:+.3f} ms (p50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
