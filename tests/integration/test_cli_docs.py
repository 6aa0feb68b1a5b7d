"""docs/cli.md runs: every ``bash`` block runs in bash, with `rock` on the PATH and ``$ID`` a
running sandbox, and must succeed (its error examples say ``|| echo``). The page's ``console``
blocks are the illustrative ones (a forward until Ctrl-C)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_sdk._cli_base import ExitCode

from .test_cli import held_sandboxes

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
BLOCKS = re.findall(r"^```bash\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
RUN = [block for block in BLOCKS if "rock " in block]


def test_every_bash_block_of_the_page_runs_rock() -> None:
    assert len(RUN) == len(BLOCKS) >= 8


@pytest.fixture(scope="module")
def shell_env(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    bin_dir = tmp_path_factory.mktemp("bin")
    rock = bin_dir / "rock"
    rock.write_text(f'#!/bin/sh\nexec {sys.executable} -m rock_sdk._cli "$@"\n')
    rock.chmod(0o755)
    with held_sandboxes(1) as (sandbox,):
        yield {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ID": sandbox}


@pytest.mark.parametrize("block", RUN, ids=[block.split("\n")[0][:40] for block in RUN])
def test_the_block_runs(block: str, shell_env: dict[str, str]) -> None:
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        env=shell_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{block}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"


def test_the_page_shows_the_exit_code_table() -> None:
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", DOC.read_text(), flags=re.M))
    assert sorted(int(code) for code in rows) == sorted(ExitCode)
