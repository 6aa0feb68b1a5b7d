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
