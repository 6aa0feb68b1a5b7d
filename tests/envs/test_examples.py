"""The game examples run as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sokoban_example_plays_one_episode() -> None:
    output = _run("games_sokoban.py")
    assert output.startswith("You are solving the Sokoban puzzle")
    assert "episode over after" in output


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_vector_example_rolls_out_64_games(backend: str) -> None:
    output = _run("games_vector.py", backend)
    assert output.startswith("64 envs x 60 steps:")
    assert "episodes finished" in output


def test_chat_example_wins_by_binary_search() -> None:
    output = _run("env_chat.py")
    assert output.startswith("   system: You play number games.\n     user: You are playing")
    assert output.endswith("reward 1.0 after 5 replies\n")


def test_hub_example_registers_lists_makes_and_deletes() -> None:
    output = _run("env_hub.py")
    assert "tagged games: ['sokoban-long']" in output
    assert "hub:sokoban-long -> SokobanEnv, max_turns=80" in output
    assert "hub:hello-file -> TaskEnv, max_turns=3" in output
    assert "did you mean 'sokoban-long'?" in output
    assert output.endswith("left: ['hello-file']\n")
