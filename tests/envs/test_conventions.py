"""GEM's reward and termination conventions, checked on every game with a scripted player."""

from __future__ import annotations

import pickle
import random
from typing import Any

import numpy as np
import pytest

from rock_core._errors import BadRequest
from rock_sdk.envs import TextGame, list_envs, make

from .players import PLAYERS, Player, boxed

GAME_IDS = list_envs("game:")


def _game(env_id: str, **kwargs: object) -> TextGame[Any, Any]:
    env = make(env_id, **kwargs)
    assert isinstance(env, TextGame)
    return env


def test_every_game_has_a_player() -> None:
    names = {env_id.split(":")[1].split("-")[0] for env_id in GAME_IDS}
    assert names == {player.env_id.split(":")[1].split("-")[0] for player in PLAYERS}
    assert len(names) == 10


@pytest.mark.parametrize("env_id", GAME_IDS)
def test_reset_is_deterministic_per_seed(env_id: str) -> None:
    first, second = _game(env_id), _game(env_id)
    assert first.reset(seed=123) == second.reset(seed=123)
    for _ in range(5):
        action = first.sample_random_action()
        assert action == second.sample_random_action()
        step = first.step(action)
        assert step == second.step(action)
        assert first.observation_space.contains(step[0])
        assert first.observation_space.contains(step[4]["suffix"])
        if step[2] or step[3]:
            break
    # Re-seeding the same instance replays the episode from the start.
    assert first.reset(seed=123) == second.reset(seed=123)
    assert first.reset(seed=7) == second.reset(seed=7)


# Tower of Hanoi always starts from the same towers; only its random variant varies.
@pytest.mark.parametrize(
    "env_id", [i for i in GAME_IDS if "TowerofHanoi" not in i or i.endswith("-random")]
)
def test_seeds_give_different_episodes(env_id: str) -> None:
    env = _game(env_id)
    assert len({_fingerprint(env, seed) for seed in range(8)}) > 1


def _fingerprint(env: TextGame[Any, Any], seed: int) -> str:
    """The state before and after one move, and the hidden answer the board may not show."""
    _, info = env.reset(seed=seed)
    after = env.step(env.sample_random_action())[4]
    hidden = [getattr(env, name, None) for name in ("target", "code", "secret")]
    return repr((info["suffix"], after["suffix"], env.config, hidden))


@pytest.mark.parametrize("env_id", GAME_IDS)
def test_games_never_touch_global_random_state(env_id: str) -> None:
    random.seed(99)
    np.random.seed(99)
    before = (random.getstate(), pickle.dumps(np.random.get_state()))
    env = _game(env_id)
    env.reset(seed=1)
    env.reset()
    for _ in range(3):
        if env.step(env.sample_random_action())[2:4] != (False, False):
            break
    assert (random.getstate(), pickle.dumps(np.random.get_state())) == before


@pytest.mark.parametrize("env_id", [i for i in GAME_IDS if i.endswith("-random")])
def test_random_variant_draws_difficulty_from_the_seed(env_id: str) -> None:
    env = _game(env_id)
    configs = []
    for seed in range(20):
        env.reset(seed=seed)
        configs.append(env.config)
    assert len(set(configs)) > 1
    env.reset(seed=3)
    assert env.config == configs[3]


@pytest.mark.parametrize("player", PLAYERS, ids=lambda p: p.env_id)
@pytest.mark.parametrize("answer", ["I refuse to answer.", "unreadable", "\\boxed{unclosed"])
def test_format_error_ends_the_episode_with_a_penalty(player: Player, answer: str) -> None:
    env = _game(player.env_id)
    env.reset(seed=0)
    action = boxed(player.unreadable) if answer == "unreadable" else answer
    observation, reward, terminated, truncated, info = env.step(action)
    assert (reward, terminated, truncated) == (-0.1, True, False)
    assert info["outcome"] == "format_error"
    assert "could not be read as a move" in observation
    assert info["suffix"]
    with pytest.raises(BadRequest, match=r"no episode in progress; call reset\(\) before step\(\)"):
        env.step(boxed(player.unreadable))


@pytest.mark.parametrize("player", PLAYERS, ids=lambda p: p.env_id)
def test_illegal_move_earns_nothing_and_the_game_goes_on(player: Player) -> None:
    env = _game(player.env_id)
    for seed in range(50):
        _, info = env.reset(seed=seed)
        move = player.illegal(env)
        if move is not None:
            break
    else:
        pytest.fail("no seed offered an illegal move")
    observation, reward, terminated, truncated, after = env.step(boxed(move))
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert after["outcome"] == "illegal"
    assert after["suffix"] == info["suffix"]  # the state did not change
    assert after["turn"] == 1
    assert observation.startswith("At turn 1, ")


@pytest.mark.parametrize("player", PLAYERS, ids=lambda p: p.env_id)
@pytest.mark.parametrize("seed", range(3))
def test_winning_earns_one_and_terminates(player: Player, seed: int) -> None:
    env = _game(player.env_id, **player.win_kwargs)
    env.reset(seed=seed)
    observation, reward, terminated, truncated, info = player.win(env)
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["outcome"] == "won"
    assert "Congratulations" in observation
    assert info["turn"] <= info["max_turns"]


@pytest.mark.parametrize("player", PLAYERS, ids=lambda p: p.env_id)
def test_turn_limit_truncates_with_partial_credit(player: Player) -> None:
    env = _game(player.env_id)
    for seed in range(30):
        env.reset(seed=seed)
        played = player.stall(env)
        if played is not None and played[1] > 0:
            break
    else:
        pytest.fail("no seed gave a stalled game with some progress")
    (observation, reward, terminated, truncated, info), expected = played
    assert (terminated, truncated) == (False, True)
    assert info["outcome"] == "truncated"
    assert info["turn"] == info["max_turns"] == env.config.max_turns
    assert reward == pytest.approx(expected)
    assert 0 < reward < 1
    assert f"maximum number of turns ({info['max_turns']})" in observation
    with pytest.raises(BadRequest, match="no episode in progress"):
        env.step(boxed(player.unreadable))


def test_step_before_reset_is_refused() -> None:
    env = _game("game:Sudoku-v0-easy")
    with pytest.raises(BadRequest, match=r"Sudoku: no episode in progress"):
        env.step("\\boxed{1 1 1}")


def test_non_string_action_is_refused() -> None:
    env = _game("game:Wordle-v0")
    env.reset(seed=0)
    with pytest.raises(BadRequest, match="an action is a string, got int"):
        env.step(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("env_id", GAME_IDS)
def test_first_observation_holds_the_rules_and_info_the_state(env_id: str) -> None:
    env = _game(env_id)
    observation, info = env.reset(seed=0)
    assert "\\boxed" in observation
    assert str(info["max_turns"]) in observation or "2048" in env_id
    assert info["turn"] == 0 and info["outcome"] == "reset"
    assert info["suffix"].splitlines()[-1].startswith("Enter your")
