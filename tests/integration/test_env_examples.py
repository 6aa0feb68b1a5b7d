"""The sandbox-backed environment examples run as written, against real Docker."""

from __future__ import annotations

from ..envs.test_examples import _run


def test_task_example_solves_the_task(docker_engine: None) -> None:
    output = _run("env_task.py")
    assert "> <bash>head -5 out.txt</bash>\n1\n2\nFizz\n4\nBuzz\n" in output
    assert "reward 1.0 (submitted)" in output
    assert output.endswith("partial credit: reward 0.667 (2/3)\n")


def test_in_sandbox_example_matches_in_process(docker_engine: None) -> None:
    output = _run("env_in_sandbox.py")
    assert output.startswith("game:Sokoban-v0-easy in a sandbox: ")
    assert "16 Wordle envs in one sandbox: " in output
