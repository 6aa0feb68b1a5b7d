"""Play one episode of easy Sokoban with random boxed moves, printing what happens.

Run with ``python examples/games_sokoban.py`` (``PYTHONPATH=src`` from a source checkout).
"""

from __future__ import annotations

import random

from rock_sdk.envs import make


def main() -> None:
    env = make("game:Sokoban-v0-easy")
    observation, info = env.reset(seed=0)
    print(observation)
    print(info["suffix"])

    rng = random.Random(0)
    total = 0.0
    while True:
        action = f"I will move \\boxed{{{rng.choice(['up', 'down', 'left', 'right'])}}}"
        observation, reward, terminated, truncated, info = env.step(action)
        total += reward
        print(f"{action!r} -> {observation} (reward {reward})")
        if terminated or truncated:
            break
    print(info["suffix"])
    print(f"episode over after {info['turn']} turns: {info['outcome']}, return {total:.2f}")
    env.close()


if __name__ == "__main__":
    main()
