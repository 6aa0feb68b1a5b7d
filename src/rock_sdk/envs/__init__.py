"""GEM-compatible text environments: games, a registry, and vector envs for rollouts.

``make("game:Sokoban-v0-easy")`` builds a game; ``reset(seed)`` and ``step(action)`` follow
gymnasium's API with string observations and actions, the move being the last
``\\boxed{...}`` of the action. Importing this package also registers every game with
gymnasium as ``rock/NAME-v0...``.
"""

from . import _catalog
from ._autoreset import AutoresetMode
from ._env import Env
from ._fifteen_puzzle import FifteenPuzzleEnv
from ._game import TextGame
from ._game2048 import Game2048Env
from ._guess_the_number import GuessTheNumberEnv
from ._hangman import HangmanEnv
from ._mastermind import MastermindEnv
from ._minesweeper import MinesweeperEnv
from ._registry import EnvSpec, Registry, list_envs, make, register, registry
from ._sokoban import SokobanEnv
from ._sudoku import SudokuEnv
from ._tower_of_hanoi import TowerofHanoiEnv
from ._vector import VectorEnv, VectorReset, VectorStep
from ._vector_async import AsyncVectorEnv
from ._vector_process import ProcessVectorEnv
from ._vector_sync import SyncVectorEnv
from ._wordle import WordleEnv

gymnasium_id = _catalog.gymnasium_id

__all__ = [
    "AsyncVectorEnv",
    "AutoresetMode",
    "Env",
    "EnvSpec",
    "FifteenPuzzleEnv",
    "Game2048Env",
    "GuessTheNumberEnv",
    "HangmanEnv",
    "MastermindEnv",
    "MinesweeperEnv",
    "ProcessVectorEnv",
    "Registry",
    "SokobanEnv",
    "SudokuEnv",
    "SyncVectorEnv",
    "TextGame",
    "TowerofHanoiEnv",
    "VectorEnv",
    "VectorReset",
    "VectorStep",
    "WordleEnv",
    "gymnasium_id",
    "list_envs",
    "make",
    "register",
    "registry",
]
