"""Benchmark: the session path, an `echo` round trip, beside raw attached shells (not a test).

One sandbox of ``python:3.11``; in it, interleaved round by round:

- ``sdk``: ``await sb.arun("echo hi", session=s)`` through an open local cluster;
- ``raw sh``: ``/bin/sh`` (dash) kept open on an attached aiodocker exec, given
  ``echo hi; echo __END__``: the physical floor of a line-based exchange;
- ``raw bash``: the agent's interactive shell (its ``BOOT``), the same line;
- ``raw bash+wrap``: such a shell set up as the agent does (``_wrap.setup``) and given the
  exact bytes the agent writes per command (``_wrap.wrap``): the wrapper's overhead is this
  minus ``raw bash``.

With ``--baseline DIR`` (another tree's ``src``, say ``/work/main/src``), ``raw bash`` and
``raw bash+wrap`` run a second time with that tree's ``_wrap`` (its shell, its setup, its
wrapper), interleaved with the rest: the shell side of a change, before and after, in one run.

It prints p50/p90 of each side, the ratio sdk p50 / raw sh p50, the CPU per SDK command of
this process and of the agent, and the load average before and after. Targets (issue 14):
ratio <= 1.5, CPU <= 0.25 ms per command (caller + agent), wrapper overhead <= +0.03 ms.

With ``--baseline-agent SRC``, a second sandbox is served by an agent run from another source
tree (``SRC``, say ``main``'s ``src``), and ``sdk (baseline agent)`` runs in the same rounds:
the agents' CPU per command is then compared in one run, under the same load. (The caller's
own code is the one this process imports; compare it by running the benchmark under each
tree's ``PYTHONPATH``.)

With ``--profile DIR``, py-spy records this process and the agent (raw samples, ``--idle``
off) during a separate loop of SDK commands only, and writes flame graphs and a top list per
process into DIR (needs ``pip install py-spy``).

Run: ``python bench/bench_session.py [--rounds N] [--profile DIR] [--baseline DIR]
[--baseline-agent SRC]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType

import aiodocker
import anyio
from _stats import child_pids, cpu_seconds, median, percentile, print_table
from bench_foundation import RawShell
from bench_wrapper import load_wrap

from rock_agent import _wrap
from rock_core._cluster import open_cluster
from rock_core._hosts import AGENT_COMMAND_ENV
from rock_sdk import Sandbox, SandboxConfig

IMAGE = "python:3.11"
SPY_FLAGS = ["--rate", "500", "--format", "raw", "--nonblocking"]


@contextlib.contextmanager
def agent_from(source: str | None) -> Iterator[None]:
    """Within the block, a local agent starts from the source tree `source` (if given)."""
    saved = os.environ.get(AGENT_COMMAND_ENV)
    if source is not None:
        os.environ[AGENT_COMMAND_ENV] = f"env PYTHONPATH={source} {sys.executable} -m rock_agent"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(AGENT_COMMAND_ENV, None)
        else:
            os.environ[AGENT_COMMAND_ENV] = saved


@contextlib.asynccontextmanager
async def open_sandbox(source: str | None) -> AsyncIterator[tuple[Sandbox, str, int]]:
    """A sandbox with a session, through a local agent of its own (run from `source`, a source
    tree, if given): (sandbox, session, the agent's pid)."""
    before = set(child_pids(cmdline_contains="rock_agent"))
    async with contextlib.AsyncExitStack() as stack:
        with agent_from(source):
            cluster = await stack.enter_async_context(open_cluster(["local"]))
        (agent,) = set(child_pids(cmdline_contains="rock_agent")) - before
        sb = await stack.enter_async_context(Sandbox(SandboxConfig(image=IMAGE), cluster=cluster))
        yield sb, await sb.create_session("bench"), agent


async def measure(
    rounds: int,
    warmup: int,
    profile: Path | None,
    baseline: Path | None,
    baseline_agent: str | None,
) -> dict[str, float]:
    """Run the sides interleaved; print the table; return the headline figures."""
    kits = {"": _wrap} if baseline is None else {"": _wrap, "base ": load_wrap(baseline)}
    async with contextlib.AsyncExitStack() as stack:
        docker = await stack.enter_async_context(aiodocker.Docker())
        sb, session, agent = await stack.enter_async_context(open_sandbox(None))
        agents = {"sdk": agent}  # side -> the pid of the agent serving it
        if baseline_agent is not None:
            old_sb, old_session, agents["sdk (baseline agent)"] = await stack.enter_async_context(
                open_sandbox(baseline_agent)
            )
        info = (await sb.status()).info
        assert info is not None
        container = await docker.containers.get(info.container_id)
        boot = {"stdin": True, "stdout": True, "tty": False, "environment": ["PS1="]}

        async def attach(argv: list[str], **options: object) -> RawShell:
            exec_ = await container.exec(argv, **options)
            return RawShell(await stack.enter_async_context(exec_.start(detach=False)))

        dash = await attach(["/bin/sh"], stdin=True, stdout=True, tty=False)
        plain = b"echo hi; echo __END__\n"

        async def sdk() -> bytes:
            result = await sb.arun("echo hi", session=session)
            return result.output.encode()

        sides: dict[str, Callable[[], Awaitable[bytes]]] = {
            "sdk": sdk,
            "raw sh": lambda: dash.roundtrip(plain, b"__END"),
        }
        for prefix, kit in kits.items():
            bash = await attach(["/bin/sh", "-c", kit.BOOT], **boot)
            wrapped = await attach(["/bin/sh", "-c", kit.BOOT], **boot)
            ready = _wrap.new_marker()
            await wrapped.roundtrip(kit.setup(ready), ready)  # as the agent sets a shell up
            sides[prefix + "raw bash"] = functools.partial(bash.roundtrip, plain, b"__END")
            sides[prefix + "raw bash+wrap"] = functools.partial(run_wrapped, wrapped, kit)
        if baseline_agent is not None:

            async def sdk_baseline() -> bytes:
                result = await old_sb.arun("echo hi", session=old_session)
                return result.output.encode()

            sides["sdk (baseline agent)"] = sdk_baseline
        times: dict[str, list[float]] = {k: [] for k in sides}
        cpu = {(k, who): 0.0 for k in agents for who in ("caller", "agent")}
        for n in range(warmup + rounds):
            for name, side in sides.items():
                if name in agents:
                    theirs, own = cpu_seconds(agents[name]), time.process_time()
                started = time.perf_counter()
                out = await side()
                elapsed = time.perf_counter() - started
                assert out == b"hi\n", (name, out)
                if n < warmup:
                    continue
                times[name].append(elapsed)
                if name in agents:
                    cpu[name, "caller"] += time.process_time() - own
                    cpu[name, "agent"] += cpu_seconds(agents[name]) - theirs
        if profile is not None:
            await profile_sdk(sdk, agent, profile, rounds)
    rows = [[k, median(v) * 1e3, percentile(v, 90) * 1e3] for k, v in times.items()]
    print_table(f"session echo round trip, {rounds} rounds, ms", ["side", "p50", "p90"], rows)
    if baseline_agent is not None:
        rows = [
            [k, cpu[k, "caller"] / rounds * 1e6, cpu[k, "agent"] / rounds * 1e6] for k in agents
        ]
        print_table("cpu per command, us", ["side", "caller", "agent"], rows)
    p50 = {k: median(v) * 1e3 for k, v in times.items()}
    figures = {
        "ratio": p50["sdk"] / p50["raw sh"],
        "cpu caller us": cpu["sdk", "caller"] / rounds * 1e6,
        "cpu agent us": cpu["sdk", "agent"] / rounds * 1e6,
        "wrapper ms": p50["raw bash+wrap"] - p50["raw bash"],
        "base wrapper ms": p50.get("base raw bash+wrap", 0.0) - p50.get("base raw bash", 0.0),
        "sdk p50 ms": p50["sdk"],
        "raw sh p50 ms": p50["raw sh"],
    }
    return figures


async def run_wrapped(shell: RawShell, kit: ModuleType) -> bytes:
    """`echo hi` in the bytes `kit` writes per command, read to its end line."""
    marker = _wrap.new_marker()
    data = kit.wrap("echo hi", marker, "bench-1", interactive=False, bash=True)
    return await shell.wrapped(data, marker)


async def profile_sdk(
    sdk: Callable[[], Awaitable[bytes]], agent: int, out: Path, rounds: int
) -> None:
    """Loop SDK commands under py-spy on both processes."""
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy is not installed: no profile")
        return
    out.mkdir(parents=True, exist_ok=True)
    seconds = 8
    targets = ((os.getpid(), "caller"), (agent, "agent"))
    procs = await anyio.to_thread.run_sync(start_spies, spy, targets, out, seconds)
    await anyio.sleep(1.0)  # py-spy attaches
    done = 0
    deadline = time.monotonic() + seconds - 1.5
    while time.monotonic() < deadline:
        await sdk()
        done += 1
    for proc in procs:
        await anyio.to_thread.run_sync(proc.wait)
    print(f"profiled {done} sdk commands into {out}")


def start_spies(
    spy: str, targets: tuple[tuple[int, str], ...], out: Path, seconds: int
) -> list[subprocess.Popen[bytes]]:
    """One `py-spy record` (raw collapsed stacks) per (pid, name), for `seconds`."""
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(seconds),
                *SPY_FLAGS,
                "-o",
                str(out / f"{who}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, who in targets
    ]


def main() -> int:
    """Parse arguments, run, print the figures against the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--baseline", type=Path, default=None, help="another tree's src")
    parser.add_argument("--baseline-agent", default=None, metavar="SRC")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    figures = anyio.run(
        measure,
        args.rounds,
        args.warmup,
        args.profile,
        args.baseline,
        args.baseline_agent,
        backend="asyncio",
    )
    print(f"load average after: {os.getloadavg()}")
    cpu = figures["cpu caller us"] + figures["cpu agent us"]
    rows = [
        ["sdk p50 / raw sh p50", f"{figures['ratio']:.2f}", "<= 1.5", figures["ratio"] <= 1.5],
        [
            "cpu per command (caller + agent)",
            f"{figures['cpu caller us']:.0f} + {figures['cpu agent us']:.0f} us",
            "<= 250 us",
            cpu <= 250,
        ],
        [
            "wrapper over bare echo (p50)",
            f"{figures['wrapper ms']:+.3f} ms",
            "<= +0.03 ms",
            figures["wrapper ms"] <= 0.03,
        ],
    ]
    for row in rows:
        row[3] = "PASS" if row[3] else "MISS"
    print_table("targets", ["figure", "measured", "target", "result"], rows)
    print(f"sdk p50 {figures['sdk p50 ms']:.3f} ms, raw sh p50 {figures['raw sh p50 ms']:.3f} ms")
    if args.baseline is not None:
        print(f"baseline wrapper over bare echo (p50): {figures['base wrapper ms']:+.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
