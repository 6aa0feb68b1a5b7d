"""Our envs in GEM's registry (gem-llm==0.1.0) and skyrl-gym's (skyrl-gym==0.4.0), driven
through the real packages' `make`, as ROLL and SkyRL call it; the ROLL config in
docs/integrations.md is read from the doc and used as ROLL's env manager uses it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from rock_sdk import AlreadyExists, BadRequest, SandboxConfig
from rock_sdk.envs import Hub, HubSpec, list_envs
from rock_sdk.envs import make as rock_make
from tests.conftest import PY_IMAGE

from ..envs.test_examples import _run as run_example
from .conftest import require

DOC = Path(__file__).parents[2] / "docs" / "integrations.md"


def doc_blocks(section: str, language: str) -> list[str]:
    """The `language` code blocks of the doc's section whose title starts with `section`."""
    text = DOC.read_text().split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def roll_config() -> dict[str, Any]:
    """The ROLL YAML shown in the "GEM's registry" section of the doc."""
    [block] = doc_blocks("GEM's registry", "yaml")
    config: dict[str, Any] = require("yaml", "gem").safe_load(block)
    return config


def test_the_docs_python() -> None:
    require("gem", "gem")
    require("skyrl_gym", "skyrl")
    [block] = doc_blocks("GEM's registry", "python")
    namespace: dict[str, Any] = {}
    exec(compile(block, str(DOC), "exec"), namespace)
    assert namespace["info"]["max_turns"] == 4 and namespace["messages"][1]["role"] == "user"
    assert set(namespace["output"]) == {"observations", "reward", "done", "metadata"}


def test_gem_make_builds_our_env_in_gems_shape() -> None:
    gem = require("gem", "gem")
    from rock_sdk.integrations import gem as adapter

    names = {adapter.PREFIX + env_id for env_id in list_envs()}
    assert names <= set(gem.envs.registration.ENV_REGISTRY)
    env = gem.make("rock/game:Sokoban-v0-easy")
    observation, info = env.reset(seed=3)
    twin = rock_make("game:Sokoban-v0-easy")
    assert (observation, info) == twin.reset(seed=3)
    result = env.step("\\boxed{up}")
    assert [type(value) for value in result] == [str, float, bool, bool, dict]
    assert result == twin.step("\\boxed{up}")
    assert env.env_id == "rock/game:Sokoban-v0-easy"  # set by gem.make
    # Registering again adds nothing (the first call publishes ids other tests added).
    adapter.register()
    assert adapter.register() == []


def test_the_roll_config_of_the_doc() -> None:
    gem = require("gem", "gem")
    import rock_sdk.integrations.gem  # noqa: F401  # what the doc says to import

    entry = roll_config()["custom_envs"]["RockGuess"]
    # ROLL's env manager: gem.make(env_id=env_config["env_type"], **env_config["config"]),
    # its "config" being the entry's env_config.
    env = gem.make(env_id=entry["env_type"], **entry["env_config"])
    twin = rock_make(entry["env_type"].removeprefix("rock/"), **entry["env_config"])
    assert env.reset(seed=7) == twin.reset(seed=7)
    for turn in range(entry["env_config"]["max_turns"]):
        result = env.step(f"\\boxed{{{turn + 1}}}")
        assert result == twin.step(f"\\boxed{{{turn + 1}}}")
        if result[2] or result[3]:
            break
    assert result[2] or result[3]


def test_hub_specs_and_collisions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gem = require("gem", "gem")
    from rock_sdk.integrations import gem as adapter

    registry = gem.envs.registration.ENV_REGISTRY
    adapter.register()  # whatever other tests registered, so that only the hub's spec is new
    monkeypatch.setenv("ROCK_HOME", str(tmp_path))
    Hub().register(
        HubSpec(name="sokoban-long", env="game:Sokoban-v0-hard", parameters={"max_turns": 80})
    )
    try:
        assert adapter.register() == ["rock/hub:sokoban-long"]
        env = gem.make("rock/hub:sokoban-long")
        assert env.reset(seed=0)[1]["max_turns"] == 80
    finally:
        registry.pop("rock/hub:sokoban-long", None)

    name = "rock/game:Wordle-v0-easy"
    ours = registry.pop(name)
    gem.register(name, "somebody.else:Wordle")
    try:
        with pytest.raises(
            AlreadyExists, match=r"GEM's registry already holds 'rock/game:Wordle-v0-easy'"
        ):
            adapter.register()
    finally:
        registry[name] = ours


def test_skyrl_gym_make_builds_a_text_env() -> None:
    skyrl_gym = require("skyrl_gym", "skyrl")
    from rock_sdk.integrations import skyrl as adapter

    adapter.register()
    assert adapter.register() == []
    env = skyrl_gym.make(
        "rock/game:GuessTheNumber-v0-easy", env_config={"max_turns": 3}, extras={"seed": 5}
    )
    assert isinstance(env, skyrl_gym.Env)
    twin = rock_make("game:GuessTheNumber-v0-easy", max_turns=3)
    first, _ = twin.reset(seed=5)
    prompt = [{"role": "system", "content": "play"}]
    messages, info = env.init(prompt)
    assert messages == [*prompt, {"role": "user", "content": first}]
    assert info["max_turns"] == 3
    for guess in (1, 2, 3):
        output = env.step(f"\\boxed{{{guess}}}")
        observation, reward, terminated, truncated, info = twin.step(f"\\boxed{{{guess}}}")
        done = terminated or truncated
        assert output == {
            "observations": [] if done else [{"role": "user", "content": observation}],
            "reward": reward,
            "done": done,
            "metadata": {**info, "observation": observation},
        }
        if done:
            break
    assert output["done"]
    env.close()

    name = "rock/game:Wordle-v0-easy"
    ours = skyrl_gym.envs.registration.registry.pop(name)
    skyrl_gym.register(name, "somebody.else:Wordle")
    try:
        with pytest.raises(
            AlreadyExists, match=r"skyrl-gym's registry already holds 'rock/game:Wordle"
        ):
            adapter.register()
    finally:
        skyrl_gym.envs.registration.registry[name] = ours

    with pytest.raises(BadRequest, match=r"env_config must be a mapping of make\(\) arguments"):
        skyrl_gym.make("rock/game:GuessTheNumber-v0-easy", env_config=[1])


def test_the_example() -> None:
    require("gem", "gem")
    require("skyrl_gym", "skyrl")
    output = run_example("integrations/gem_registry.py")
    assert re.match(r"\d+ rock/ ids in GEM's registry, e\.g\. rock/game:", output)
    assert "registering again adds []\n" in output
    assert "GEM Mastermind: " in output
    assert output.endswith("skyrl-gym GuessTheNumber: won, reward 1.0\n")


@pytest.mark.docker
@pytest.mark.slow
def test_gem_make_in_a_sandbox_plays_as_in_process() -> None:
    gem = require("gem", "gem")
    import rock_sdk.integrations.gem  # noqa: F401

    env = gem.make("rock/game:Sokoban-v0-easy", sandbox=SandboxConfig(image=PY_IMAGE))
    twin = rock_make("game:Sokoban-v0-easy")
    try:
        assert type(env).__name__ == "RemoteEnv"
        assert env.reset(seed=3) == twin.reset(seed=3)
        for move in ("up", "left", "down"):
            assert env.step(f"\\boxed{{{move}}}") == twin.step(f"\\boxed{{{move}}}")
    finally:
        env.close()
