"""The registry: register, make with overrides, listing, and unknown ids."""

from __future__ import annotations

from typing import Any

import pytest

from rock_core._errors import AlreadyExists, BadRequest, NotFound
from rock_sdk.envs import (
    Env,
    EnvSpec,
    GuessTheNumberEnv,
    Registry,
    SokobanEnv,
    list_envs,
    make,
    register,
    registry,
)
from rock_sdk.envs._env import ResetResult, StepResult

GAMES = [
    "Sokoban", "Minesweeper", "Wordle", "Mastermind", "GuessTheNumber",
    "Hangman", "Sudoku", "TowerofHanoi", "FifteenPuzzle", "Game2048",
]  # fmt: skip


class EchoEnv(Env):
    """A tiny environment for registry tests: echoes the action back."""

    def __init__(self, greeting: str = "hello", loud: bool = False) -> None:
        super().__init__()
        self.greeting = greeting.upper() if loud else greeting

    def reset(
        self, seed: int | None = None, *, options: dict[str, Any] | None = None
    ) -> ResetResult:
        self._reseed(seed)
        return self.greeting, {}

    def step(self, action: str) -> StepResult:
        return action, 0.0, True, False, {}


@pytest.mark.parametrize("game", GAMES)
def test_every_game_has_gems_ids(game: str) -> None:
    ids = list_envs(f"game:{game}-")
    for suffix in ("", "-easy", "-hard", "-random"):
        assert f"game:{game}-v0{suffix}" in ids


def test_list_envs_is_sorted_and_filters_by_prefix() -> None:
    everything = list_envs()
    assert everything == sorted(everything)
    assert list_envs("game:Sokoban") == [
        "game:Sokoban-v0", "game:Sokoban-v0-easy", "game:Sokoban-v0-hard", "game:Sokoban-v0-random",
    ]  # fmt: skip
    assert "game:Game2048-v0-extreme-hard" in everything
    assert list(registry) == everything and len(registry) == len(everything)


def test_make_applies_registered_defaults_and_call_time_overrides() -> None:
    env = make("game:Sokoban-v0-hard")
    assert isinstance(env, SokobanEnv)
    assert (env.config.dim_room, env.config.num_boxes, env.config.max_turns) == ((8, 8), 4, 50)
    assert env.env_id == "game:Sokoban-v0-hard"
    env = make("game:Sokoban-v0-hard", max_turns=80, num_boxes=3)
    assert isinstance(env, SokobanEnv)
    assert (env.config.dim_room, env.config.num_boxes, env.config.max_turns) == ((8, 8), 3, 80)


def test_unknown_id_names_the_closest_ids() -> None:
    with pytest.raises(NotFound) as caught:
        make("game:Sokoban-v0-eassy")
    message = str(caught.value)
    assert message.startswith("unknown environment id 'game:Sokoban-v0-eassy'; did you mean ")
    assert "'game:Sokoban-v0-easy'" in message
    with pytest.raises(
        NotFound, match=r"unknown environment id 'zzz'; list_envs\(\) shows the \d+"
    ):
        make("zzz")
    assert isinstance(caught.value, LookupError)


def test_bad_arguments_are_refused_before_building() -> None:
    with pytest.raises(BadRequest, match=r"environment 'game:Wordle-v0': bad arguments .*colour"):
        make("game:Wordle-v0", colour="green")


def test_register_a_class_and_a_string_entry_point() -> None:
    local = Registry()
    spec = local.register("test:Echo-v0", EchoEnv, greeting="hi")
    assert spec == EnvSpec("test:Echo-v0", EchoEnv, {"greeting": "hi"})
    assert local.make("test:Echo-v0").reset()[0] == "hi"
    assert local.make("test:Echo-v0", loud=True).reset()[0] == "HI"
    local.register("test:Guess-v0", "rock_sdk.envs:GuessTheNumberEnv", max_number=30)
    guess = local.make("test:Guess-v0")
    assert isinstance(guess, GuessTheNumberEnv) and guess.config.max_number == 30
    assert local.ids() == ["test:Echo-v0", "test:Guess-v0"]
    assert "test:Echo-v0" in local and local["test:Echo-v0"] is spec


def test_registering_is_idempotent_but_conflicts_are_refused() -> None:
    local = Registry()
    first = local.register("test:Echo-v0", EchoEnv, greeting="hi")
    assert local.register("test:Echo-v0", EchoEnv, greeting="hi") == first
    with pytest.raises(AlreadyExists, match="environment 'test:Echo-v0' is already registered"):
        local.register("test:Echo-v0", EchoEnv, greeting="bye")


@pytest.mark.parametrize(
    ("env_id", "entry_point", "message"),
    [
        ("", EchoEnv, "an environment id is a non-empty string"),
        ("test:X-v0", 42, "entry_point must be a callable or a 'module:Name' string"),
        ("test:X-v0", "no_colon_here", "is not of the form 'module:Name'"),
    ],
)
def test_bad_registrations_are_refused(env_id: str, entry_point: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        Registry().register(env_id, entry_point)


def test_unimportable_entry_point_is_not_found() -> None:
    local = Registry()
    local.register("test:Ghost-v0", "rock_sdk.envs:NoSuchEnv")
    with pytest.raises(NotFound, match=r"cannot import entry point 'rock_sdk.envs:NoSuchEnv'"):
        local.make("test:Ghost-v0")


def test_global_register_adds_to_the_global_registry() -> None:
    register("test:GlobalEcho-v0", EchoEnv)
    try:
        assert "test:GlobalEcho-v0" in list_envs("test:")
        assert make("test:GlobalEcho-v0", greeting="yo").reset(seed=1) == ("yo", {})
    finally:
        registry._specs.pop("test:GlobalEcho-v0")
