"""Roll out 64 games at once with `AsyncVectorEnv`, one random move per game per step.

Every game of the package takes part (64 environments cycling through the ten games). The
vector env awaits all of them concurrently and resets finished ones in the same step
(``info["final_info"]`` then describes the episode that ended). Runs under asyncio; pass
``trio`` as the first argument to run under trio instead.
"""

from __future__ import annotations

import sys
from collections import Counter

import anyio

from rock_sdk.envs import AsyncVectorEnv, list_envs

NUM_ENVS = 64
STEPS = 60


async def main() -> None:
    easy = [env_id for env_id in list_envs("game:") if env_id.endswith("-easy")]
    env_ids = [easy[i % len(easy)] for i in range(NUM_ENVS)]
    async with AsyncVectorEnv(env_ids) as envs:
        await envs.areset(seed=0)
        outcomes: Counter[str] = Counter()
        returns = [0.0] * NUM_ENVS
        finished: list[float] = []
        for _ in range(STEPS):
            actions = [env.sample_random_action() for env in envs.envs]
            _, rewards, terminated, truncated, infos = await envs.astep(actions)
            for index, reward in enumerate(rewards):
                returns[index] += reward
                if terminated[index] or truncated[index]:
                    outcomes[infos[index]["final_info"]["outcome"]] += 1
                    finished.append(returns[index])
                    returns[index] = 0.0
    mean = sum(finished) / len(finished) if finished else 0.0
    print(f"{NUM_ENVS} envs x {STEPS} steps: {len(finished)} episodes finished")
    print(f"outcomes: {dict(outcomes)}; mean episode return {mean:.3f}")


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
