"""Benchmark: `rock run IMAGE -- CMD` beside `docker run --rm IMAGE CMD` (not a test).

1. Wall time of both, interleaved in this one run (each a fresh process, stdin /dev/null), with
   the ratio and the load average before and after: on a shared machine only the ratio means
   much.
2. ``--profile``: where one `rock run` spends its time: the CLI's imports
   (`python -X importtime`), then a cProfile of the CLI process, cut down to the steps it takes
   (agent start, sandbox create, the command, removal).
3. ``--stdin-mb N``: N MB piped through `rock run IMAGE -- cat >/dev/null`, sampling the
   resident memory of the `rock` process and of its agent while it runs: the growth over an
   empty stdin shows whether stdin streams with bounded memory.

Run: ``PYTHONPATH=src python bench/bench_cli_run.py [--rounds 5] [--profile] [--stdin-mb 50]
[--before OTHER/src]`` (needs Docker and the local image ``python:3.11``; nothing is pulled).
``--before`` also times the CLI of another checkout in the same rounds: before and after.
"""

from __future__ import annotations

import argparse
import itertools
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import anyio
from _stats import median, print_table

IMAGE = "python:3.11"
CMD = ["python3", "-c", "print(6*7)"]
ROCK = [sys.executable, "-m", "rock_sdk._cli"]


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=300, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or done.stdout.strip() != b"42":
        raise SystemExit(f"{argv[:4]} failed ({done.returncode}): {done.stderr.decode()}")
    return elapsed


def compare(rounds: int, before: str | None) -> None:
    load_before = os.getloadavg()
    rock_run = [*ROCK, "run", IMAGE, "--", *CMD]
    sides: dict[str, tuple[list[str], dict[str, str] | None]] = {"rock run": (rock_run, None)}
    if before:
        # The same command from another checkout (its src folder, for its agent too).
        sides[f"rock run ({before})"] = (rock_run, {**os.environ, "PYTHONPATH": before})
    sides["docker run --rm"] = (["docker", "run", "--rm", IMAGE, *CMD], None)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for argv, env in sides.values():
        timed(argv, env)  # warm the page cache on every side
    for _ in range(rounds):
        for name, (argv, env) in sides.items():
            times[name].append(timed(argv, env))
    load_after = os.getloadavg()
    docker_s = median(times["docker run --rm"])
    print_table(
        f"`rock run` vs `docker run --rm`, {rounds} rounds interleaved (seconds)",
        ["", "median", "min", "max", "x docker"],
        [[n, median(t), min(t), max(t), median(t) / docker_s] for n, t in times.items()],
    )
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")


def profile() -> None:
    imports = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import rock_sdk._cli"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr.splitlines()
    total_us = int(imports[-1].split("|")[1])
    heavy = sorted(
        (line for line in imports if line.count("|") == 2 and line.split("|")[1].strip().isdigit()),
        key=lambda line: -int(line.split("|")[1]),
    )
    print(f"\nimporting rock_sdk._cli: {total_us / 1e6:.3f} s; largest (cumulative, us):")
    for line in heavy[1:9]:
        print("  " + line.split(":", 1)[1].strip())
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run.prof"
        argv = [*ROCK, "run", IMAGE, "--", *CMD]
        started = time.perf_counter()
        code = f"import cProfile, sys; sys.argv = {['rock', *argv[3:]]!r}; "
        code += "from rock_sdk._cli import main; "
        code += f"cProfile.run('rc = main(sys.argv[1:])', {str(out)!r})"
        subprocess.run(
            [sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=True, check=True
        )
        wall = time.perf_counter() - started
        stats = pstats.Stats(str(out))
    marks = anyio.run(timeline)
    print_table(
        "the steps of `rock run`, timed in this process (seconds)",
        ["step", "took"],
        [[name, end - begin] for (_, begin), (name, end) in itertools.pairwise(marks)],
    )
    print(f"\none `rock run` under cProfile: {wall:.2f} s wall; largest cumulative times:")
    stats.sort_stats("cumulative").print_stats(18)


async def timeline() -> list[tuple[str, float]]:
    """The steps `rock run` takes, each timed on the wall clock (cProfile cannot: they wait)."""
    from rock_core.protocol import ExecuteStreamed
    from rock_sdk import Sandbox, SandboxConfig, open_cluster
    from rock_sdk._cli_pipe import stream_exec

    marks = [("", time.perf_counter())]
    async with open_cluster(["local"]) as cluster:
        marks.append(("start the agent, handshake", time.perf_counter()))
        sandbox = Sandbox(SandboxConfig(image=IMAGE, cpus=1.0, memory="1g"), cluster=cluster)
        await sandbox.start()
        marks.append(("create the sandbox", time.perf_counter()))
        request = ExecuteStreamed(sandbox_id=sandbox.sandbox_id, argv=CMD)
        await stream_exec(sandbox.cluster.connection(sandbox.sandbox_id), request, None)
        marks.append(("run the command (one ExecuteStreamed)", time.perf_counter()))
        await sandbox.delete()
        marks.append(("remove the sandbox", time.perf_counter()))
    marks.append(("stop the agent", time.perf_counter()))
    return marks


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(p) for p in task.read_text().split()]
        except OSError:
            pass
    return found


def peak_rss(size: int, env: dict[str, str] | None = None) -> tuple[int, int, float]:
    """(peak RSS of `rock`, peak RSS of its agent, seconds) for `size` bytes of stdin."""
    argv = [*ROCK, "run", "--memory", "256m", IMAGE, "--", "cat >/dev/null; echo 42"]
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    peaks = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peaks[0] = max(peaks[0], rss_kib(process.pid))
            for child in children(process.pid):
                peaks[1] = max(peaks[1], rss_kib(child))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    data = bytes(range(256)) * (size // 256)
    try:
        out, err = process.communicate(data, timeout=600)
    finally:
        done.set()
        sampler.join()
    if process.returncode != 0 or out.strip() != b"42":
        raise SystemExit(f"rock run failed ({process.returncode}): {err.decode()}")
    return peaks[0], peaks[1], time.perf_counter() - started


def stdin_memory(megabytes: int, before: str | None) -> None:
    sides: dict[str, dict[str, str] | None] = {"": None}
    if before:
        sides[f" ({before})"] = {**os.environ, "PYTHONPATH": before}
    rows: list[list[object]] = []
    for name, env in sides.items():
        empty = peak_rss(0, env)
        full = peak_rss(megabytes << 20, env)
        rows += [
            [f"empty{name}", empty[0] / 1024, empty[1] / 1024, empty[2]],
            [f"{megabytes} MiB{name}", full[0] / 1024, full[1] / 1024, full[2]],
            [f"growth{name}", (full[0] - empty[0]) / 1024, (full[1] - empty[1]) / 1024, ""],
        ]
    print_table(
        f"{megabytes} MiB of stdin through `rock run ... -- cat >/dev/null` (peak RSS, MiB)",
        ["stdin", "rock", "its agent", "seconds"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--stdin-mb", type=int, default=0)
    parser.add_argument("--before", metavar="SRC", help="also time the CLI of another checkout")
    args = parser.parse_args()
    if args.rounds:
        compare(args.rounds, args.before)
    if args.profile:
        profile()
    if args.stdin_mb:
        stdin_memory(args.stdin_mb, args.before)


if __name__ == "__main__":
    main()
