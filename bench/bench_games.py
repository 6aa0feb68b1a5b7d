"""Benchmark: rock_sdk.envs games beside GEM's (a benchmark, not a test).

Measures, for our games and, when ``--gem-python`` points at an interpreter with ``gem-llm``
installed, for GEM's:

1. Reset time of ``game:Sokoban-v0-hard`` (p50 / p99), and whether the levels are solvable
   within the turn limit (checked by our optimal solver, on both sides' levels).
2. Steps per second of every game's easy variant under random well-formed actions (time
   spent in ``step`` only; episodes are reset when they end, outside the clock), and the
   median reset time.

GEM runs in its own interpreter: this file re-runs itself there with ``--side gem`` and
reads one JSON line back, so gem-llm never has to be importable next to this project::

    python -m venv /tmp/gemvenv && /tmp/gemvenv/bin/pip install gem-llm
    PYTHONPATH=src python bench/bench_games.py --gem-python /tmp/gemvenv/bin/python

Only the standard library is imported at the top so the GEM side can run this file.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

GAMES = [
    "Sokoban", "Minesweeper", "Wordle", "Mastermind", "GuessTheNumber",
    "Hangman", "Sudoku", "TowerofHanoi", "FifteenPuzzle", "Game2048",
]  # fmt: skip
HARD_SOKOBAN = "game:Sokoban-v0-hard"
DIRECTIONS = ("up", "down", "left", "right")
WORDS_3 = ("CAT", "DOG", "SUN", "ARM", "TEA", "OWL", "BOX", "RED", "ICE", "JAM")


def random_move(game: str, rng: random.Random) -> str:
    """A random well-formed move for `game`'s easy variant (legal or not)."""
    if game in ("Sokoban", "FifteenPuzzle", "Game2048"):
        move = rng.choice(DIRECTIONS)
    elif game == "Minesweeper":
        move = f"reveal {rng.randrange(5)} {rng.randrange(5)}"
    elif game == "Wordle":
        move = rng.choice(WORDS_3)
    elif game == "Mastermind":
        move = " ".join(str(d) for d in rng.sample(range(1, 7), 2))
    elif game == "GuessTheNumber":
        move = str(rng.randint(1, 10))
    elif game == "Hangman":
        move = rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    elif game == "Sudoku":
        move = f"{rng.randint(1, 4)} {rng.randint(1, 4)} {rng.randint(1, 4)}"
    else:
        move = " ".join(rng.sample("ABC", 2))
    return f"I will play \\boxed{{{move}}}"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure_steps(make: Callable[[str], Any], game: str, steps: int) -> dict[str, float]:
    """Steps per second (step calls only) and median reset time of `game`'s easy variant."""
    env = make(f"game:{game}-v0-easy")
    rng = random.Random(0)
    resets: list[float] = []
    seed = 0

    def reset() -> None:
        nonlocal seed
        started = time.perf_counter()
        env.reset(seed=seed)
        resets.append(time.perf_counter() - started)
        seed += 1

    reset()
    stepping = 0.0
    for _ in range(steps):
        action = random_move(game, rng)
        started = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        stepping += time.perf_counter() - started
        if terminated or truncated:
            reset()
    return {"steps_per_s": steps / stepping, "reset_p50_ms": statistics.median(resets) * 1e3}


def measure_sokoban_resets(
    make: Callable[[str], Any], count: int, level_of: Callable[[Any], dict[str, Any]]
) -> dict[str, Any]:
    """Reset times of hard Sokoban, and the levels made (for the solvability check)."""
    env = make(HARD_SOKOBAN)
    times, levels = [], []
    for seed in range(count):
        started = time.perf_counter()
        env.reset(seed=seed)
        times.append(time.perf_counter() - started)
        levels.append(level_of(env))
    return {"times": times, "levels": levels}


# ---- the GEM side (runs inside the gem-llm interpreter) -------------------------------------


def gem_level(env: Any) -> dict[str, Any]:
    """A GEM level in our solver's terms (cells numbered row * width + col)."""
    fixed, state = env.room_fixed, env.room_state
    width = int(fixed.shape[1])
    cells = [(r * width + c, int(fixed[r, c]), int(state[r, c])) for r, c in _cells(fixed)]
    return {
        "width": width,
        "floor": [cell for cell, fix, _ in cells if fix != 0],
        "targets": [cell for cell, fix, _ in cells if fix == 2],
        "boxes": [cell for cell, _, now in cells if now in (3, 4)],
        "player": next(cell for cell, _, now in cells if now == 5),
        "max_turns": int(env.max_turns),
    }


def _reason(exc: Exception) -> str:
    """The exception's type and its first line with words in it, without terminal colours."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip() for line in text.splitlines() if re.search(r"[A-Za-z]", line)]
    return f"{type(exc).__name__}: {lines[0][:70] if lines else ''}"


def _cells(grid: Any) -> list[tuple[int, int]]:
    return [(r, c) for r in range(grid.shape[0]) for c in range(grid.shape[1])]


def run_gem_side(resets: int, steps: int) -> dict[str, Any]:
    socket.setdefaulttimeout(5)  # GEM's word games try to download a corpus; fail fast
    import gem  # type: ignore[import-not-found]

    def make(env_id: str) -> Any:
        return gem.make(env_id)

    result: dict[str, Any] = {"sokoban": measure_sokoban_resets(make, resets, gem_level)}
    result["games"] = {}
    for game in GAMES:
        try:
            result["games"][game] = measure_steps(make, game, steps)
        except Exception as exc:  # a game GEM cannot run here is reported, not fatal
            result["games"][game] = {"error": _reason(exc)}
    return result


# ---- our side ---------------------------------------------------------------------------------


def our_level(env: Any) -> dict[str, Any]:
    level = env.level
    return {
        "width": level.width,
        "floor": sorted(level.floor),
        "targets": sorted(level.targets),
        "boxes": sorted(level.boxes),
        "player": level.player,
        "max_turns": env.config.max_turns,
    }


def run_our_side(resets: int, steps: int) -> dict[str, Any]:
    from rock_sdk.envs import make

    result: dict[str, Any] = {"sokoban": measure_sokoban_resets(make, resets, our_level)}
    result["games"] = {game: measure_steps(make, game, steps) for game in GAMES}
    result["vectors"] = measure_vectors(64, 20)
    return result


def measure_vectors(num_envs: int, rounds: int) -> dict[str, dict[str, float]]:
    """Reset and step times of `num_envs` hard Sokoban games in each kind of vector env."""
    import anyio

    from rock_sdk.envs import AsyncVectorEnv, ProcessVectorEnv, SyncVectorEnv

    rng = random.Random(0)
    moves = [[random_move("Sokoban", rng) for _ in range(num_envs)] for _ in range(rounds)]

    async def timed(
        reset: Callable[[int], Awaitable[Any]], step: Callable[[list[str]], Awaitable[Any]]
    ) -> dict[str, float]:
        resets, steps = [], []
        for round_ in range(rounds):
            started = time.perf_counter()
            await reset(round_ * num_envs)
            resets.append(time.perf_counter() - started)
            started = time.perf_counter()
            await step(moves[round_])
            steps.append(time.perf_counter() - started)
        return {
            "reset_ms": statistics.median(resets) * 1e3,
            "steps_per_s": num_envs / statistics.median(steps),
        }

    async def all_kinds() -> dict[str, dict[str, float]]:
        result = {}
        # The blocking vector envs are called directly: no thread hop in the figures.
        with SyncVectorEnv(HARD_SOKOBAN, num_envs) as sync:
            result["SyncVectorEnv"] = await timed(_awaitable(sync.reset), _awaitable(sync.step))
        with ProcessVectorEnv(HARD_SOKOBAN, num_envs) as pool:
            result[f"ProcessVectorEnv ({pool.num_workers} workers)"] = await timed(
                _awaitable(pool.reset), _awaitable(pool.step)
            )
        async with AsyncVectorEnv(HARD_SOKOBAN, num_envs) as concurrent:
            result["AsyncVectorEnv (asyncio)"] = await timed(
                lambda seed: concurrent.areset(seed=seed), concurrent.astep
            )
        return result

    return anyio.run(all_kinds)


def _awaitable(call: Callable[[Any], Any]) -> Callable[[Any], Awaitable[Any]]:
    async def run(argument: Any) -> Any:
        return call(argument)

    return run


def solvability(levels: list[dict[str, Any]]) -> dict[str, Any]:
    """How many levels our optimal solver solves, and within the turn limit."""
    from rock_sdk.envs._sokoban_solver import solve

    solved = within = 0
    lengths = []
    for level in levels:
        moves = solve(
            level["floor"], level["targets"], level["boxes"], level["player"], level["width"]
        )
        if moves is not None:
            solved += 1
            within += len(moves) <= level["max_turns"]
            lengths.append(len(moves))
    return {
        "levels": len(levels),
        "solvable": solved,
        "within_turn_limit": within,
        "median_optimal_moves": statistics.median(lengths) if lengths else None,
    }


def gem_results(gem_python: str, resets: int, steps: int) -> dict[str, Any]:
    command = [gem_python, __file__, "--side", "gem", "--resets", str(resets)]
    command += ["--steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"GEM side failed ({done.returncode}):\n{done.stderr[-2000:]}")
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed


def report(ours: dict[str, Any], gem: dict[str, Any] | None) -> None:
    print("== game:Sokoban-v0-hard reset ==")
    sides = [("ours", ours)] + ([("GEM", gem)] if gem else [])
    p50s = {}
    for name, side in sides:
        times = side["sokoban"]["times"]
        p50s[name] = percentile(times, 0.5)
        check = solvability(side["sokoban"]["levels"])
        print(
            f"{name:>5}: {len(times)} resets  p50 {p50s[name] * 1e3:8.2f} ms  "
            f"p99 {percentile(times, 0.99) * 1e3:8.2f} ms  solvable {check['solvable']}/"
            f"{check['levels']}  within turn limit {check['within_turn_limit']}/"
            f"{check['levels']}  median optimal moves {check['median_optimal_moves']}"
        )
    if gem:
        print(f"GEM p50 / ours p50: {p50s['GEM'] / p50s['ours']:.0f}x")
    print("\n== steps per second (random well-formed moves, easy variants) ==")
    header = f"{'game':<16}{'ours steps/s':>14}{'ours reset':>12}"
    if gem:
        header += f"{'GEM steps/s':>14}{'GEM reset':>12}{'steps ratio':>13}"
    print(header)
    for game in GAMES:
        mine = ours["games"][game]
        line = f"{game:<16}{mine['steps_per_s']:>14,.0f}{mine['reset_p50_ms']:>10.3f}ms"
        if gem:
            theirs = gem["games"][game]
            if "error" in theirs:
                line += f"  GEM n/a: {theirs['error']}"
            else:
                ratio = mine["steps_per_s"] / theirs["steps_per_s"]
                line += f"{theirs['steps_per_s']:>14,.0f}{theirs['reset_p50_ms']:>10.3f}ms"
                line += f"{ratio:>12.2f}x"
        print(line)
    print("\n== vector envs: 64 x game:Sokoban-v0-hard (median of 20 rounds) ==")
    for name, figures in ours["vectors"].items():
        print(
            f"{name:<32} reset all {figures['reset_ms']:8.1f} ms   "
            f"step all {figures['steps_per_s']:>10,.0f} env-steps/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gem-python", help="interpreter with gem-llm installed")
    parser.add_argument("--resets", type=int, default=200, help="hard Sokoban resets (ours)")
    parser.add_argument("--gem-resets", type=int, default=20, help="hard Sokoban resets (GEM)")
    parser.add_argument("--steps", type=int, default=3000, help="steps per game")
    parser.add_argument("--side", choices=["ours", "gem"], default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "gem":
        print(json.dumps(run_gem_side(args.resets, args.steps)))
        return
    gem = gem_results(args.gem_python, args.gem_resets, args.steps) if args.gem_python else None
    report(run_our_side(args.resets, args.steps), gem)


if __name__ == "__main__":
    main()
