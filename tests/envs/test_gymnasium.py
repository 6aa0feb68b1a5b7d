"""Every game is a real gymnasium environment: check_env passes, gymnasium.make works."""

from __future__ import annotations

import importlib
import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import rock_sdk.envs
from rock_sdk.envs import Env, gymnasium_id, list_envs, make

GAME_IDS = list_envs("game:")


@pytest.mark.parametrize("env_id", GAME_IDS)
def test_check_env_passes_on_every_game(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium reports soft problems as warnings
        warnings.filterwarnings("ignore", message=".*not having a spec.*")
        check_env(make(env_id))


@pytest.mark.parametrize("env_id", GAME_IDS)
def test_gymnasium_make_builds_every_game(env_id: str) -> None:
    gym_env = gymnasium.make(gymnasium_id(env_id))
    assert isinstance(gym_env.unwrapped, Env)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym_env.unwrapped)
    observation, info = gym_env.reset(seed=11)
    assert (observation, info) == make(env_id).reset(seed=11)
    step = gym_env.step("\\boxed{?}")
    assert step[1:4] == (-0.1, True, False)


def test_gymnasium_ids_and_kwargs_follow_the_registry() -> None:
    assert gymnasium_id("game:Sokoban-v0-easy") == "rock/Sokoban-v0-easy"
    spec = gymnasium.spec("rock/Sokoban-v0-hard")
    assert spec.kwargs == {"dim_room": (8, 8), "num_boxes": 4, "max_turns": 50}
    env = gymnasium.make("rock/Sokoban-v0-hard", max_turns=7)
    assert getattr(env.unwrapped, "config").max_turns == 7  # noqa: B009


def test_registration_on_import_is_idempotent() -> None:
    before = {key for key in gymnasium.registry if key.startswith("rock/")}
    assert len(before) == len(GAME_IDS)
    importlib.reload(rock_sdk.envs._catalog)
    after = {key for key in gymnasium.registry if key.startswith("rock/")}
    assert after == before
