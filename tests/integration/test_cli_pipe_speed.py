"""What keeps `rock run` quick: `rock` imports no environment code unless `rock env` runs."""

from __future__ import annotations

import re
import subprocess
import sys

import typer

from rock_sdk._cli_lazy import LAZY_GROUPS

CHECK = """
import sys
from rock_sdk._cli import main
code = main(sys.argv[1:])
print(code, 'gymnasium' in sys.modules, file=sys.stderr)
"""


def imports(*args: str) -> tuple[str, str, str]:
    """`rock args`: (stdout, stderr but the last line, its exit code and whether gymnasium
    was imported)."""
    done = subprocess.run(
        [sys.executable, "-c", CHECK, *args], capture_output=True, text=True, timeout=120
    )
    *said, seen = done.stderr.strip().splitlines()
    return done.stdout, "".join(f"{line}\n" for line in said), seen


def test_rock_help_lists_env_without_importing_the_environments() -> None:
    out, _, seen = imports("--help")
    assert seen == "0 False"
    assert re.search(r"^  env +Manage the hub's environment specs\.$", out, re.MULTILINE), out
    out, _, seen = imports("env", "--help")
    assert seen == "0 True"
    assert "register  Add a spec." in out


def test_a_typo_still_suggests_the_lazy_group() -> None:
    _, said, seen = imports("envv")
    assert seen == "125 False"
    assert said == "rock: No such command 'envv'. Did you mean 'env'? (see 'rock --help')\n"


def test_each_stand_in_says_what_its_real_group_says() -> None:
    import importlib

    for module, attribute, help_text in LAZY_GROUPS.values():
        app = getattr(importlib.import_module(module), attribute)
        assert typer.main.get_command(app).help == help_text
