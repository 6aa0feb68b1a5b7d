"""Benchmark: mini-swe-agent's step loop on the kit beside its own Docker environment (not a test).

Both sides run mini-swe-agent's own `DefaultAgent` with its scripted `DeterministicModel`
over the same ``--steps`` actions (the last one submits), in this one process, interleaved
(`compare_rates`: the side that goes first rotates each round):

- ``rock``: `rock_sdk.integrations.minisweagent.RockEnvironment`, every action on one
  persistent session of a sandbox (one local agent, one shell for the whole run);
- ``docker``: mini-swe-agent's `DockerEnvironment`, which runs ``docker exec ... bash -lc``
  per action, given the sandbox's limits (``--cpus 1 --memory 1g --network none``).

Each side's environment is made once (its start is timed apart) and kept for all rounds; a
round is one whole ``agent.run``. Printed: steps/s of each side (median, min, max over the
rounds), the ratio of the medians, each environment's start, and the load average before and
after. A second table times the same actions through ``env.execute`` alone, without the agent
(whose own cost per step grows with the trajectory: it renders templates and serializes all
messages each step), to show what the environments themselves cost.

Needs Docker and the local image ``python:3.11`` (nothing is pulled), and
``pip install '.[mini-swe-agent]'``.

    PYTHONPATH=src python bench/bench_minisweagent.py [--steps 200] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")

from _stats import compare_rates, print_table
from minisweagent.agents.default import DefaultAgent
from minisweagent.environments.docker import DockerEnvironment
from minisweagent.models.test_models import DeterministicModel, make_output

from rock_sdk.integrations.minisweagent import RockEnvironment

logging.getLogger("minisweagent").setLevel(logging.WARNING)  # it logs each container it starts

IMAGE = "python:3.11"
BENCH_LABEL = "rock.bench"
SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && echo done"


def actions(steps: int) -> list[str]:
    """`steps` small, typical agent actions, the last of which submits."""
    return [f"cd /usr && echo step {i} && ls | head -3" for i in range(steps - 1)] + [SUBMIT]


def run_agent(env: Any, commands: list[str]) -> float:
    """Seconds for one whole `agent.run` of `commands` on `env` (which must submit)."""
    model = DeterministicModel(outputs=[make_output(c, [{"command": c}]) for c in commands])
    agent = DefaultAgent(
        model, env, system_template="", instance_template="{{task}}", step_limit=0, cost_limit=0
    )
    started = time.perf_counter()
    result = agent.run("bench")
    elapsed = time.perf_counter() - started
    if result.get("exit_status") != "Submitted" or len(agent.messages) != 2 + 2 * len(commands):
        raise RuntimeError(f"the run did not finish as scripted: {result}")
    return elapsed


def bench_containers() -> list[str]:
    """Ids of the containers this benchmark's Docker side made (and any earlier run's)."""
    argv = ["docker", "ps", "-aq", "--filter", f"label={BENCH_LABEL}=1"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="actions per agent run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50 steps, 2 rounds")
    args = parser.parse_args()
    steps, rounds = (50, 2) if args.quick else (args.steps, args.rounds)
    commands = actions(steps)
    print(f"load average before: {os.getloadavg()}")
    started = time.perf_counter()
    rock = RockEnvironment(image=IMAGE, timeout=60)
    rock_start = time.perf_counter() - started
    docker: DockerEnvironment | None = None
    try:
        started = time.perf_counter()
        limits = ["--cpus", "1", "--memory", "1g", "--network", "none"]
        docker = DockerEnvironment(
            image=IMAGE, timeout=60, run_args=["--rm", "--label", f"{BENCH_LABEL}=1", *limits]
        )
        docker_start = time.perf_counter() - started
        print_table(
            "environment start (s)",
            ["side", "seconds"],
            [["rock", rock_start], ["docker", docker_start]],
        )
        sides = {
            "rock (one session)": _timed(rock, commands),
            "docker (exec per step)": _timed(docker, commands),
        }
        rates = anyio.run(
            compare_rates, f"agent steps/s ({steps} steps a run)", sides, steps, rounds
        )
        ours, theirs = rates.values()
        print(f"\nratio rock / docker: {ours / theirs:.2f}x")
        bare = {
            "rock execute": _timed(rock, commands[:-1], bare=True),
            "docker execute": _timed(docker, commands[:-1], bare=True),
        }
        title = f"bare env.execute calls/s, no agent ({steps - 1} a run)"
        rates = anyio.run(compare_rates, title, bare, steps - 1, rounds)
        ours, theirs = rates.values()
        print(f"\nratio rock / docker: {ours / theirs:.2f}x")
    finally:
        rock.cleanup()
        if docker is not None and docker.container_id:
            subprocess.run(["docker", "rm", "-f", docker.container_id], capture_output=True)
            docker.container_id = None  # its own cleanup (also on gc) then has nothing to do
    print(f"\nload average after: {os.getloadavg()}")
    left = bench_containers()
    if left:
        print(f"LEAK: containers left with {BENCH_LABEL}=1: {left}; removing them")
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
        return 1
    return 0


def run_bare(env: Any, commands: list[str]) -> float:
    """Seconds for `commands` through `env.execute` alone (the environment's own cost)."""
    started = time.perf_counter()
    for command in commands:
        if env.execute({"command": command})["returncode"] != 0:
            raise RuntimeError(f"{command!r} failed")
    return time.perf_counter() - started


def _timed(env: Any, commands: list[str], *, bare: bool = False) -> Any:
    async def side() -> float:  # blocking on purpose: nothing else runs meanwhile
        return run_bare(env, commands) if bare else run_agent(env, commands)

    return side


if __name__ == "__main__":
    sys.exit(main())
