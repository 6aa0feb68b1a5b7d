"""Our environments made through GEM's and skyrl-gym's own registries, as ROLL and SkyRL make
them (needs `rock-kit[gem]` and `rock-kit[skyrl]`; no Docker).

    python3 examples/integrations/gem_registry.py
"""

import re

import gem
import skyrl_gym

import rock_sdk.integrations.gem
import rock_sdk.integrations.skyrl  # registers rock/... in skyrl-gym

ids = [env_id for env_id in gem.envs.registration.ENV_REGISTRY if env_id.startswith("rock/")]
print(f"{len(ids)} rock/ ids in GEM's registry, e.g. {ids[0]}")
print(f"registering again adds {rock_sdk.integrations.gem.register()}")

# ROLL's env manager: gem.make(env_id=<env_type>, **<env_config>), then reset / step.
env = gem.make(env_id="rock/game:Mastermind-v0-easy", max_turns=6)
observation, info = env.reset(seed=1)
terminated = truncated = False
while not (terminated or truncated):
    observation, reward, terminated, truncated, info = env.step(env.sample_random_action())
print(f"GEM Mastermind: {info['outcome']} after {info['turn']} turns, last reward {reward}")

# SkyRL: skyrl_gym.make(env_class, env_config=..., extras=...), then init / step, in messages.
env = skyrl_gym.make(
    "rock/game:GuessTheNumber-v0-easy", env_config={"max_turns": 4}, extras={"seed": 3}
)
messages, _ = env.init([{"role": "system", "content": "Guess the number."}])
low, high, output = 1, 10, {"done": False}
while not output["done"]:
    guess = (low + high) // 2  # a binary-search "model"
    output = env.step(f"My guess: \\boxed{{{guess}}}")
    said = output["metadata"]["observation"]
    if re.search(r"higher", said):
        low = guess + 1
    elif re.search(r"lower", said):
        high = guess - 1
    messages += output["observations"]
print(f"skyrl-gym GuessTheNumber: {output['metadata']['outcome']}, reward {output['reward']}")
env.close()
