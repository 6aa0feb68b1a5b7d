"""Any registered environment, run inside a sandbox instead of in this process.

``make(env_id, sandbox=True)`` uploads the game's code into a fresh sandbox, starts a small
server there and steps it over the session's stream, one JSON line each way; the env owns
the sandbox and deletes it on ``close``. The episode is the same as in process for the same
seed. The second half steps 16 games at once in the caller's event loop, all sharing one
sandbox and one server there, through `AsyncVectorEnv`: each vector step is one batch.

Needs Docker and the ``python:3.11`` image (``bash scripts/setup-host.sh``).
"""

from __future__ import annotations

import random
import time

import anyio

from rock_core import open_cluster
from rock_sdk import Sandbox, SandboxConfig, make
from rock_sdk.envs import AsyncVectorEnv

GAME = "game:Sokoban-v0-easy"


def in_sandbox_vs_in_process() -> None:
    remote = make(GAME, sandbox=True)
    local = make(GAME)
    rng = random.Random(0)
    try:
        assert remote.reset(seed=42) == local.reset(seed=42)
        steps, spent = 0, 0.0
        for _ in range(40):
            action = f"\\boxed{{{rng.choice(['up', 'down', 'left', 'right'])}}}"
            started = time.perf_counter()
            result = remote.step(action)
            spent += time.perf_counter() - started
            steps += 1
            assert result == local.step(action)  # the same game, step for step
            if result[2] or result[3]:
                break
        print(f"{GAME} in a sandbox: {steps} steps, {spent / steps * 1e3:.2f} ms per step")
        print(f"last observation: {result[0]}")
    finally:
        remote.close()


async def many_in_one_sandbox() -> None:
    async with open_cluster(["local"]) as cluster:
        config = SandboxConfig(image="python:3.11", cpus=0.5, memory="512m")
        async with Sandbox(config, cluster=cluster) as sandbox:
            async with AsyncVectorEnv("game:Wordle-v0-easy", 16, sandbox=sandbox) as envs:
                await envs.areset(seed=0)
                started = time.perf_counter()
                for _ in range(10):
                    await envs.astep(["\\boxed{CAT}"] * envs.num_envs)
                spent = time.perf_counter() - started
        print(f"16 Wordle envs in one sandbox: {160 / spent:.0f} env-steps/s")


if __name__ == "__main__":
    in_sandbox_vs_in_process()
    anyio.run(many_in_one_sandbox)
