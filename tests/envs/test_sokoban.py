"""Sokoban levels: solvable by construction, proved by an independent solver over many seeds."""

from __future__ import annotations

import random

import pytest

from rock_core._errors import BadRequest
from rock_sdk.envs import SokobanEnv, make
from rock_sdk.envs._sokoban_level import Level, generate_level
from rock_sdk.envs._sokoban_solver import solve

from .players import boxed


def _level(env: SokobanEnv) -> Level:
    return env.level


def _check_level(level: Level, max_turns: int) -> None:
    # The outer ring is wall, boxes and player stand on floor, and no box starts on a target.
    for cell in level.floor:
        row, col = divmod(cell, level.width)
        assert 0 < row < level.height - 1 and 0 < col < level.width - 1
    assert level.boxes <= level.floor and level.player in level.floor
    assert level.player not in level.boxes
    assert len(level.boxes) == len(level.targets)
    assert level.boxes.isdisjoint(level.targets)
    moves = solve(level.floor, level.targets, level.boxes, level.player, level.width)
    assert moves is not None, "the solver found no solution"
    assert 1 <= len(moves) <= len(level.solution) <= max_turns


@pytest.mark.parametrize(
    ("env_id", "seeds"),
    [("game:Sokoban-v0-easy", 200), ("game:Sokoban-v0-hard", 50)],
)
def test_generated_levels_are_solvable_within_the_turn_limit(env_id: str, seeds: int) -> None:
    env = make(env_id)
    assert isinstance(env, SokobanEnv)
    for seed in range(seeds):
        env.reset(seed=seed)
        _check_level(env.level, env.config.max_turns)


@pytest.mark.parametrize("seed", range(20))
def test_the_generators_own_solution_wins(seed: int) -> None:
    env = make("game:Sokoban-v0-hard")
    assert isinstance(env, SokobanEnv)
    env.reset(seed=seed)
    # The backward game may pass through the solved state, so the win can come early.
    for turn, move in enumerate(env.level.solution, start=1):  # noqa: B007
        step = env.step(boxed(move))
        if step[2]:
            break
    assert step[1:4] == (1.0, True, False)
    assert turn <= len(env.level.solution)


def test_random_variant_levels_are_solvable() -> None:
    env = make("game:Sokoban-v0-random")
    assert isinstance(env, SokobanEnv)
    rooms = set()
    for seed in range(30):
        env.reset(seed=seed)
        rooms.add(env.config.dim_room)
        _check_level(env.level, env.config.max_turns)
    assert rooms == {(6, 6), (8, 8)}


def test_rendering_uses_gems_symbols() -> None:
    env = SokobanEnv(dim_room=(6, 6), num_boxes=2, max_turns=20)
    _, info = env.reset(seed=4)
    board = info["suffix"].splitlines()[1:7]
    assert all(len(line.split()) == 6 for line in board)
    symbols = "".join(board).replace(" ", "")
    assert symbols.count("P") + symbols.count("S") == 1
    assert symbols.count("X") == 2 and symbols.count("O") + symbols.count("S") == 2
    assert set(symbols) <= set("#_OX√PS")
    assert board[0] == "# # # # # #"


def test_pushing_a_box_onto_a_target_shows_it() -> None:
    env = SokobanEnv(dim_room=(6, 6), num_boxes=2, max_turns=20)
    env.reset(seed=0)
    level = env.level
    moves = solve(level.floor, level.targets, level.boxes, level.player, level.width)
    assert moves is not None
    suffixes = [env.step(boxed(move))[4]["suffix"] for move in moves]
    assert "√" in suffixes[-1] and suffixes[-1].count("√") == 2


def test_solver_solves_a_hand_made_level_optimally() -> None:
    # #######
    # #P_X_O#   one push corridor: walk 1, push 2
    # #######
    width = 7
    floor = {8, 9, 10, 11, 12}
    moves = solve(floor, {12}, {10}, 8, width)
    assert moves == ["right", "right", "right"]


def test_solver_reports_an_unsolvable_level() -> None:
    # The box sits in a corner away from the target: no push can ever move it there.
    width = 5
    floor = {6, 7, 8, 11, 12, 13}
    assert solve(floor, {13}, {6}, 12, width) is None


def test_generation_never_uses_the_global_random_module() -> None:
    random.seed(5)
    state = random.getstate()
    generate_level(random.Random(1), 8, 8, 4, 50)
    assert random.getstate() == state


def test_impossible_parameters_are_refused() -> None:
    with pytest.raises(
        BadRequest, match=r"Sokoban: dim_room must be at least \(5, 5\), got \(4, 9\)"
    ):
        SokobanEnv(dim_room=(4, 9))
    with pytest.raises(BadRequest, match="Sokoban: num_boxes must be at least 1, got 0"):
        SokobanEnv(num_boxes=0)
    env = SokobanEnv(dim_room=(5, 5), num_boxes=9, max_turns=20)
    with pytest.raises(BadRequest, match="could not make a Sokoban level of 5x5 with 9 boxes"):
        env.reset(seed=0)
