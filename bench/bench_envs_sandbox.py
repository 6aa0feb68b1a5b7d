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
   the scheduler never over-commits), every env stepped once per round. Reported: env-steps
   per second, the time of a whole round, each env's own step latency (its `astep`, timed
   from inside the round), and the same vector of games in process. Each env holds one
   session; ``--agents`` spreads the sandboxes over that many local agents (one
   `open_cluster(["local"])` each; default 1).

    PYTHONPATH=src python bench/bench_envs_sandbox.py [--steps 2000] [--envs 256]
"""

from __future__ import annotations

import argparse
import json
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
    env_id: str, num_envs: int, per_sandbox: int, rounds: int, agents: int
) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        clusters = [await stack.enter_async_context(open_cluster(["local"])) for _ in range(agents)]
        return await _vector(clusters, env_id, num_envs, per_sandbox, rounds)


async def _vector(
    clusters: list[Cluster], env_id: str, num_envs: int, per_sandbox: int, rounds: int
) -> dict[str, Any]:
    count = -(-num_envs // per_sandbox)
    cpus = round(min(0.25, 1.6 / count), 3)
    config = SandboxConfig(image=IMAGE, cpus=cpus, memory="512m")
    started = time.perf_counter()
    sandboxes = [Sandbox(config, cluster=clusters[i % len(clusters)]) for i in range(count)]
    async with anyio.create_task_group() as group:
        for sb in sandboxes:
            group.start_soon(sb.start)
    sandboxes_s = time.perf_counter() - started
    rng = random.Random(1)
    per_env: list[float] = []
    try:
        envs = AsyncVectorEnv(env_id, num_envs, sandbox=RoundRobin(sandboxes))
        for env in envs.envs:
            _time_astep(env, per_env)
        started = time.perf_counter()
        for first in range(0, num_envs, START_BATCH):
            await envs.areset(seed=0, indices=range(first, min(num_envs, first + START_BATCH)))
        first_reset_s = time.perf_counter() - started
        directions = ("up", "down", "left", "right")
        round_times = []
        per_env.clear()
        for _ in range(rounds):
            actions = [f"\\boxed{{{rng.choice(directions)}}}" for _ in range(num_envs)]
            started = time.perf_counter()
            await envs.astep(actions)
            round_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        await envs.aclose()
        close_s = time.perf_counter() - started
    finally:
        with anyio.CancelScope(shield=True):
            for sb in sandboxes:
                await sb.delete()
    local = AsyncVectorEnv(env_id, num_envs)
    await local.areset(seed=0)
    local_rounds = []
    for _ in range(rounds):
        actions = [f"\\boxed{{{rng.choice(directions)}}}" for _ in range(num_envs)]
        started = time.perf_counter()
        await local.astep(actions)
        local_rounds.append(time.perf_counter() - started)
    return {
        "agents": len(clusters),
        "sandboxes": count,
        "cpus_each": cpus,
        "start_sandboxes_s": sandboxes_s,
        "first_reset_s": first_reset_s,
        "close_s": close_s,
        "steps_per_s": num_envs * rounds / sum(round_times),
        "round_p50_ms": ms(round_times, 50),
        "round_p99_ms": ms(round_times, 99),
        "env_step_p50_ms": ms(per_env, 50),
        "env_step_p99_ms": ms(per_env, 99),
        "local_steps_per_s": num_envs * rounds / sum(local_rounds),
        "local_round_p50_ms": ms(local_rounds, 50),
    }


def _time_astep(env: Any, sink: list[float]) -> None:
    inner = env.astep

    async def timed(action: str) -> Any:
        started = time.perf_counter()
        try:
            return await inner(action)
        finally:
            sink.append(time.perf_counter() - started)

    env.astep = timed


async def async_part(args: argparse.Namespace, results: dict[str, Any]) -> None:
    async with open_cluster(["local"]) as cluster:
        floor = await transport_floor(cluster, args.steps)
        results["floor"] = floor
        for env_id in args.games:
            remote, local = await async_round_trips(cluster, env_id, args.steps)
            results["games"][env_id].update(remote_async=remote, local=local)
    results["vector"] = await vector(
        args.vector_game, args.envs, args.per_sandbox, args.rounds, args.agents
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per single-env run")
    parser.add_argument(
        "--games", nargs="+", default=["game:Sokoban-v0-easy", "game:Wordle-v0-easy"]
    )
    parser.add_argument("--envs", type=int, default=256)
    parser.add_argument("--per-sandbox", type=int, default=16)
    parser.add_argument(
        "--agents", type=int, default=1, help="local agents (clusters) the sandboxes spread over"
    )
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--vector-game", default="game:Sokoban-v0-easy")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()

    results: dict[str, Any] = {"games": {}}
    for env_id in args.games:
        results["games"][env_id] = {"remote_sync": sync_round_trips(env_id, args.steps)}
    anyio.run(async_part, args, results)

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
    v = results["vector"]
    print_table(
        f"{args.envs} x {args.vector_game} through AsyncVectorEnv, {args.rounds} rounds "
        f"({v['sandboxes']} sandboxes of {v['cpus_each']} cpu, {args.per_sandbox} envs each, "
        f"over {v['agents']} local agents)",
        ["", "value"],
        [
            ["start the sandboxes (s)", v["start_sandboxes_s"]],
            ["first reset: sessions + servers (s)", v["first_reset_s"]],
            ["env-steps/s", v["steps_per_s"]],
            ["round of all envs p50 / p99 (ms)",
             f"{v['round_p50_ms']:.1f} / {v['round_p99_ms']:.1f}"],
            ["one env's step p50 / p99 (ms)",
             f"{v['env_step_p50_ms']:.2f} / {v['env_step_p99_ms']:.2f}"],
            ["close all envs (s)", v["close_s"]],
            ["in process: env-steps/s", v["local_steps_per_s"]],
            ["in process: round p50 (ms)", v["local_round_p50_ms"]],
        ],
    )  # fmt: skip
    if args.json:
        summary = {
            env_id: {kind: [ms(t, 50), ms(t, 99)] for kind, t in figures.items()}
            for env_id, figures in results["games"].items()
        }
        print(json.dumps({"floor": [ms(results["floor"], 50), ms(results["floor"], 99)],
                          "games": summary, "vector": v}))  # fmt: skip


if __name__ == "__main__":
    main()
