"""Benchmark: environments stepped inside sandboxes (a benchmark, not a test).

Measures on this machine's Docker engine:

1. The step round trip of one game run inside a sandbox (`make(id, sandbox=...)`): an action
   goes out as a JSON line to the in-sandbox server through the agent's session stream, the
   step's result comes back the same way. Beside it, the same step in process, and the floor
   of the transport (a line echoed by a bare python3 loop in the same kind of session). Three
   ways to run the remote env: in the caller's event loop (``cluster=``), through the sync API
   (the env's own loop thread and local agent), and the transport floor.
2. Many envs stepped at once through `AsyncVectorEnv`: ``--envs`` games spread over
   sandboxes of ``--per-sandbox`` envs each (a round-robin `SandboxFactory` over started
   sandboxes: a host with 2 cpus cannot hold 256 sandboxes of even 0.01 cpu each, since
   the scheduler never over-commits), every env stepped once per round. Three vectors over
   the same sandboxes, their rounds interleaved in a rotating order so that a change of load
   hits each: ``batched`` (the envs of a sandbox share one env server: one round trip per
   sandbox per round), ``unbatched`` (``envs_per_server=1``: a server, and a round trip, per
   env) and the same games in process (the baseline). Reported: env-steps per second, the
   time of a whole round, ratios to the baseline and to unbatched, the first reset and the
   close of each, and the load average. ``--mode`` runs one of the two sandboxed vectors
   only; ``--games`` with no game skips part 1; ``--agents`` spreads the sandboxes over that
   many local agents (one `open_cluster(["local"])` each; default 1).

    PYTHONPATH=src python bench/bench_envs_sandbox.py [--steps 2000] [--envs 256] [--mode both]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stats import percentile, print_table

from rock_core import Cluster, open_cluster
from rock_sdk import Sandbox, SandboxConfig
from rock_sdk.envs import AsyncVectorEnv, TextGame, make
from rock_sdk.envs._remote_server import REPLY_PATTERN

IMAGE = "python:3.11"
#: Envs started at once: each start opens a session (a `docker exec`), the engine runs about 20
#: a second here, and an agent gives a shell 15 s to answer, so hundreds at once would time out.
START_BATCH = 32
ECHO = (
    "python3 -u -c 'import sys\nfor line in sys.stdin: sys.stdout.write(\"\\x1erock-env \" + line)'"
)


def ms(values: list[float], q: float) -> float:
    return percentile(values, q) * 1e3


def moves_for(env_id: str, count: int, seed: int) -> list[str]:
    """Well-formed random moves from a local copy of the game (legal or not)."""
    game = make(env_id)
    assert isinstance(game, TextGame)
    game.reset(seed=seed)
    return [game.sample_random_action() for _ in range(count)]


class Lockstep:
    """A remote env's moves checked against an in-process twin; both timed per step.

    The driver (sync or async) times each remote step and hands its result to `check`, which
    steps the twin with the same move, compares, and says whether the episode ended (then the
    driver resets the remote env, seedless, as `check` did the twin).
    """

    def __init__(self, env_id: str, steps: int) -> None:
        self.twin = make(env_id)
        self.twin.reset(seed=0)
        self.moves = moves_for(env_id, steps, 0)
        self.remote: list[float] = []
        self.local: list[float] = []

    def check(self, move: str, result: Any, elapsed: float) -> bool:
        self.remote.append(elapsed)
        started = time.perf_counter()
        expected = self.twin.step(move)
        self.local.append(time.perf_counter() - started)
        assert result == expected, (result, expected)
        if expected[2] or expected[3]:
            self.twin.reset()
            return True
        return False


def sync_round_trips(env_id: str, steps: int) -> list[float]:
    env = make(env_id, sandbox=True)
    run = Lockstep(env_id, steps)
    try:
        env.reset(seed=0)
        for move in run.moves:
            started = time.perf_counter()
            result = env.step(move)
            if run.check(move, result, time.perf_counter() - started):
                env.reset()
    finally:
        env.close()
    return run.remote


async def async_round_trips(
    cluster: Cluster, env_id: str, steps: int
) -> tuple[list[float], list[float]]:
    env = make(env_id, sandbox=True, cluster=cluster)
    run = Lockstep(env_id, steps)
    try:
        await env.areset(seed=0)
        for move in run.moves:
            started = time.perf_counter()
            result = await env.astep(move)
            if run.check(move, result, time.perf_counter() - started):
                await env.areset()
    finally:
        await env.aclose()
    return run.remote, run.local


async def transport_floor(cluster: Cluster, steps: int) -> list[float]:
    config = SandboxConfig(image=IMAGE, cpus=0.25, memory="256m")
    async with Sandbox(config, cluster=cluster) as sb:
        await sb.create_session("echo")
        process = await sb.start_interactive(ECHO, "echo")
        line = json.dumps({"op": "step", "action": "\\boxed{up}", "id": 1})
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            await process.sendline(line)
            await process.expect(REPLY_PATTERN, timeout=10)
            times.append(time.perf_counter() - started)
    return times


class RoundRobin:
    """A `SandboxFactory` lending started sandboxes in turn; it deletes nothing."""

    def __init__(self, sandboxes: list[Sandbox]) -> None:
        self.sandboxes = sandboxes
        self.next = 0

    async def acquire(self) -> Sandbox:
        sandbox = self.sandboxes[self.next % len(self.sandboxes)]
        self.next += 1
        return sandbox

    async def release(self, sandbox: Sandbox) -> None:
        return None


async def vector(
    env_id: str, num_envs: int, per_sandbox: int, rounds: int, agents: int, modes: list[str]
) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        clusters = [await stack.enter_async_context(open_cluster(["local"])) for _ in range(agents)]
        return await _vector(clusters, env_id, num_envs, per_sandbox, rounds, modes)


async def _vector(
    clusters: list[Cluster],
    env_id: str,
    num_envs: int,
    per_sandbox: int,
    rounds: int,
    modes: list[str],
) -> dict[str, Any]:
    count = -(-num_envs // per_sandbox)
    cpus = round(min(0.25, 1.6 / count), 3)
    config = SandboxConfig(image=IMAGE, cpus=cpus, memory="512m")
    started = time.perf_counter()
    sandboxes = [Sandbox(config, cluster=clusters[i % len(clusters)]) for i in range(count)]
    async with anyio.create_task_group() as group:
        for sb in sandboxes:
            group.start_soon(sb.start)
    figures: dict[str, Any] = {
        "agents": len(clusters),
        "sandboxes": count,
        "cpus_each": cpus,
        "start_sandboxes_s": time.perf_counter() - started,
    }
    vectors: dict[str, AsyncVectorEnv] = {}
    try:
        for mode in modes:
            per_server = per_sandbox if mode == "batched" else 1
            envs = AsyncVectorEnv(
                env_id, num_envs, sandbox=RoundRobin(sandboxes), envs_per_server=per_server
            )
            vectors[mode] = envs
            started = time.perf_counter()
            for first in range(0, num_envs, START_BATCH):
                await envs.areset(seed=0, indices=range(first, min(num_envs, first + START_BATCH)))
            figures[f"{mode}_first_reset_s"] = time.perf_counter() - started
        vectors["in process"] = AsyncVectorEnv(env_id, num_envs)
        await vectors["in process"].areset(seed=0)
        # Rounds interleaved, in a rotating order, so that a change of load hits every mode.
        times: dict[str, list[float]] = {mode: [] for mode in vectors}
        rng = random.Random(1)
        directions = ("up", "down", "left", "right")
        order = list(vectors)
        for turn in range(rounds):
            for mode in order[turn % len(order) :] + order[: turn % len(order)]:
                actions = [f"\\boxed{{{rng.choice(directions)}}}" for _ in range(num_envs)]
                started = time.perf_counter()
                await vectors[mode].astep(actions)
                times[mode].append(time.perf_counter() - started)
        for mode, round_times in times.items():
            figures[mode] = {
                "steps_per_s": num_envs * rounds / sum(round_times),
                "round_p50_ms": ms(round_times, 50),
                "round_p99_ms": ms(round_times, 99),
            }
        for mode in modes:
            started = time.perf_counter()
            await vectors.pop(mode).aclose()
            figures[f"{mode}_close_s"] = time.perf_counter() - started
    finally:
        with anyio.CancelScope(shield=True):
            for envs in vectors.values():
                await envs.aclose()
            for sb in sandboxes:
                await sb.delete()
    return figures


async def async_part(args: argparse.Namespace, results: dict[str, Any]) -> None:
    if args.games:
        async with open_cluster(["local"]) as cluster:
            results["floor"] = await transport_floor(cluster, args.steps)
            for env_id in args.games:
                remote, local = await async_round_trips(cluster, env_id, args.steps)
                results["games"][env_id].update(remote_async=remote, local=local)
    modes = {"both": ["batched", "unbatched"]}.get(args.mode, [args.mode])
    results["vector"] = await vector(
        args.vector_game, args.envs, args.per_sandbox, args.rounds, args.agents, modes
    )


def print_single(args: argparse.Namespace, results: dict[str, Any]) -> None:
    rows = [["transport floor (echo line, no game)", ms(results["floor"], 50),
             ms(results["floor"], 99), ""]]  # fmt: skip
    for env_id, figures in results["games"].items():
        local = figures["local"]
        rows.append([f"{env_id} in process", ms(local, 50), ms(local, 99), ""])
        for kind, label in (("remote_async", "caller's loop"), ("remote_sync", "sync API")):
            times = figures[kind]
            ratio = statistics.median(times) / statistics.median(local)
            rows.append(
                [f"{env_id} in a sandbox, {label}", ms(times, 50), ms(times, 99), f"{ratio:.0f}x"]
            )
    print_table(
        f"Step round trip ({args.steps} steps each)",
        ["what", "p50 ms", "p99 ms", "p50 / in process"],
        rows,
    )


def print_vector(args: argparse.Namespace, v: dict[str, Any]) -> None:
    modes = [mode for mode in ("batched", "unbatched") if mode in v]
    local = v["in process"]["steps_per_s"]
    rows: list[list[Any]] = []
    for mode in [*modes, "in process"]:
        f = v[mode]
        ratios = [f"{f['steps_per_s'] / local:.3f}"]
        if "unbatched" in v:
            ratios.append(f"{f['steps_per_s'] / v['unbatched']['steps_per_s']:.2f}")
        rows.append([mode, f["steps_per_s"], f"{f['round_p50_ms']:.1f} / {f['round_p99_ms']:.1f}",
                     *ratios])  # fmt: skip
    per = {"batched": f"{args.per_sandbox} envs per server", "unbatched": "a server per env"}
    print_table(
        f"{args.envs} x {args.vector_game} through AsyncVectorEnv, {args.rounds} rounds each, "
        f"interleaved ({v['sandboxes']} sandboxes of {v['cpus_each']} cpu, {args.per_sandbox} "
        f"envs each, over {v['agents']} local agents)",
        ["mode", "env-steps/s", "round p50 / p99 (ms)", "/ in process",
         *(["/ unbatched"] if "unbatched" in v else [])],
        rows,
    )  # fmt: skip
    print_table(
        "Setting up and closing",
        ["", "value"],
        [["start the sandboxes (s)", v["start_sandboxes_s"]]]
        + [[f"{mode} ({per[mode]}): first reset, 32 at a time (s)", v[f"{mode}_first_reset_s"]]
           for mode in modes]
        + [[f"{mode}: close all envs (s)", v[f"{mode}_close_s"]] for mode in modes],
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per single-env run")
    parser.add_argument(
        "--games",
        nargs="*",
        default=["game:Sokoban-v0-easy", "game:Wordle-v0-easy"],
        help="games of the single-env part (none: skip it)",
    )
    parser.add_argument("--envs", type=int, default=256)
    parser.add_argument("--per-sandbox", type=int, default=16)
    parser.add_argument(
        "--agents", type=int, default=1, help="local agents (clusters) the sandboxes spread over"
    )
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--vector-game", default="game:Sokoban-v0-easy")
    parser.add_argument(
        "--mode",
        choices=["both", "batched", "unbatched"],
        default="both",
        help="batched: the envs of a sandbox share one server (one round trip per sandbox per "
        "step); unbatched: a server per env (one round trip per env); both: interleaved",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()

    load_before = os.getloadavg()
    results: dict[str, Any] = {"games": {}}
    for env_id in args.games:
        results["games"][env_id] = {"remote_sync": sync_round_trips(env_id, args.steps)}
    anyio.run(async_part, args, results)
    load_after = os.getloadavg()

    if args.games:
        print_single(args, results)
    print_vector(args, results["vector"])
    print(f"\nload average (1, 5, 15 min) before: {load_before}, after: {load_after}")
    if args.json:
        summary = {
            env_id: {kind: [ms(t, 50), ms(t, 99)] for kind, t in figures.items()}
            for env_id, figures in results["games"].items()
        }
        floor = results.get("floor")
        figures = {"floor": floor and [ms(floor, 50), ms(floor, 99)], "games": summary}
        figures.update(vector=results["vector"], load=[load_before, load_after])
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
