"""The built-in games, registered under GEM's ids in our registry and in gymnasium's.

Each game has ``game:NAME-v0`` (the class defaults, GEM's constructor defaults) and
``-v0-easy`` / ``-v0-hard`` with GEM's parameters, plus ``-v0-random``, which draws the
difficulty from the episode seed at every reset. In gymnasium the same games are
``rock/NAME-v0...``. Importing this module twice registers nothing twice.
"""

from __future__ import annotations

from typing import Any

import gymnasium

from ._env import Env
from ._fifteen_puzzle import FifteenPuzzleEnv
from ._game2048 import Game2048Env
from ._guess_the_number import GuessTheNumberEnv
from ._hangman import HangmanEnv
from ._mastermind import MastermindEnv
from ._minesweeper import MinesweeperEnv
from ._registry import registry
from ._sokoban import SokobanEnv
from ._sudoku import SudokuEnv
from ._tower_of_hanoi import TowerofHanoiEnv
from ._wordle import WordleEnv

__all__ = ["GAMES", "gymnasium_id"]

_RANDOM: dict[str, Any] = {"randomize": True}

#: Game name -> (class, {variant suffix: default arguments}).
GAMES: dict[str, tuple[type[Env], dict[str, dict[str, Any]]]] = {
    "GuessTheNumber": (
        GuessTheNumberEnv,
        {
            "easy": {"min_number": 1, "max_number": 10, "max_turns": 4},
            "hard": {"min_number": 1, "max_number": 50, "max_turns": 7},
        },
    ),
    "Mastermind": (
        MastermindEnv,
        {
            "easy": {"code_length": 2, "num_numbers": 6, "max_turns": 10},
            "hard": {"code_length": 4, "num_numbers": 8, "max_turns": 30},
        },
    ),
    "Minesweeper": (
        MinesweeperEnv,
        {
            "easy": {"rows": 5, "cols": 5, "num_mines": 5, "max_turns": 25},
            "hard": {"rows": 8, "cols": 8, "num_mines": 12, "max_turns": 64},
        },
    ),
    "Wordle": (
        WordleEnv,
        {
            "easy": {"word_length": 3, "max_turns": 15},
            "hard": {"word_length": 5, "max_turns": 25},
        },
    ),
    "FifteenPuzzle": (
        FifteenPuzzleEnv,
        {
            "easy": {"num_rows": 2, "max_turns": 10},
            "hard": {"num_rows": 4, "max_turns": 50},
        },
    ),
    "Hangman": (
        HangmanEnv,
        {
            "easy": {"word_length": 3, "max_turns": 10},
            "hard": {"word_length": 7, "max_turns": 20},
        },
    ),
    "Sudoku": (
        SudokuEnv,
        {
            "easy": {"scale": 4, "clues": 10, "max_turns": 15},
            "hard": {"scale": 9, "clues": 50, "max_turns": 50},
        },
    ),
    "TowerofHanoi": (
        TowerofHanoiEnv,
        {
            "easy": {"num_disks": 3, "max_turns": 10},
            "hard": {"num_disks": 5, "max_turns": 35},
        },
    ),
    "Game2048": (
        Game2048Env,
        {
            "easy": {"target_tile": 64, "max_turns": 50},
            "hard": {"target_tile": 512, "max_turns": 50},
            "extreme-hard": {"target_tile": 2048, "max_turns": 100},
        },
    ),
    "Sokoban": (
        SokobanEnv,
        {
            "easy": {"dim_room": (6, 6), "num_boxes": 2, "max_turns": 20},
            "hard": {"dim_room": (8, 8), "num_boxes": 4, "max_turns": 50},
        },
    ),
}


def gymnasium_id(env_id: str) -> str:
    """The gymnasium id of a built-in game id: ``game:X-v0-easy`` -> ``rock/X-v0-easy``."""
    return "rock/" + env_id.removeprefix("game:")


def _register_all() -> None:
    for name, (cls, variants) in GAMES.items():
        for suffix, defaults in {"": {}, **variants, "random": _RANDOM}.items():
            env_id = f"game:{name}-v0" + (f"-{suffix}" if suffix else "")
            registry.register(env_id, cls, **defaults)
            gym_id = gymnasium_id(env_id)
            if gym_id not in gymnasium.registry:
                entry_point = f"{cls.__module__}:{cls.__qualname__}"
                gymnasium.register(id=gym_id, entry_point=entry_point, kwargs=dict(defaults))


_register_all()
