"""GEM-compatible text environments: games, tasks in sandboxes, a registry, a hub, vector envs.

``make("game:Sokoban-v0-easy")`` builds a game; ``reset(seed)`` and ``step(action)`` follow
gymnasium's API with string observations and actions, the move being the last
``\\boxed{...}`` of the action. ``make(id, sandbox=True)`` runs any environment inside a
sandbox; `TaskEnv` plays a `TaskSpec` with shell commands in a fresh sandbox per episode;
`ChatEnv` speaks in chat messages; ``make("hub:NAME")`` builds a spec stored in the `Hub`.
Importing this package also registers every game with gymnasium as ``rock/NAME-v0...``.
"""

from . import _catalog
from ._autoreset import AutoresetMode
from ._chat import ChatEnv, Message
from ._env import Env
from ._fifteen_puzzle import FifteenPuzzleEnv
from ._game import TextGame
from ._game2048 import Game2048Env
from ._guess_the_number import GuessTheNumberEnv
from ._hangman import HangmanEnv
from ._hub import Hub, HubSpec
from ._make import make
from ._mastermind import MastermindEnv
from ._minesweeper import MinesweeperEnv
from ._registry import EnvSpec, Registry, list_envs, register, registry
from ._remote import RemoteEnv
from ._sandbox_env import ColdStart, SandboxEnv, SandboxFactory
from ._sokoban import SokobanEnv
from ._sudoku import SudokuEnv
from ._task import TaskEnv, TaskSpec
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
    "ChatEnv",
    "ColdStart",
    "Env",
    "EnvSpec",
    "FifteenPuzzleEnv",
    "Game2048Env",
    "GuessTheNumberEnv",
    "HangmanEnv",
    "Hub",
    "HubSpec",
    "MastermindEnv",
    "Message",
    "MinesweeperEnv",
    "ProcessVectorEnv",
    "Registry",
    "RemoteEnv",
    "SandboxEnv",
    "SandboxFactory",
    "SokobanEnv",
    "SudokuEnv",
    "SyncVectorEnv",
    "TaskEnv",
    "TaskSpec",
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
