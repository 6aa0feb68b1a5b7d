"""Command groups of `rock` whose code is imported only when they run: `rock env` (the
environments import gymnasium and numpy, a third of the CLI's start-up).

Rules:
- A lazy group is listed (`rock --help`) by a stand-in with its name and help; its real
  commands are imported when the command line names it (its first word that is not an
  option) or when the shell completes a word (completion may need any group).
- The stand-in's help is the real group's: a test compares them.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

import typer
from typer.core import TyperGroup

# name: (module, attribute holding its typer app, help)
LAZY_GROUPS = {
    "env": ("rock_sdk.envs._cli", "env_app", "Manage the hub's environment specs."),
}


def add_lazy_groups(root: object, argv: Sequence[str], prog: str = "rock") -> None:
    """Add each lazy group to `root` (the command line's group): the real one if `argv` runs
    it, else a stand-in."""
    assert isinstance(root, TyperGroup)
    words = [word for word in argv if not word.startswith("-")]
    completing = f"_{prog.upper()}_COMPLETE" in os.environ
    for name, (module, attribute, help_text) in LAZY_GROUPS.items():
        if completing or words[:1] == [name]:
            app = getattr(importlib.import_module(module), attribute)
            root.add_command(typer.main.get_command(app), name)
        else:
            root.add_command(TyperGroup(name=name, help=help_text, no_args_is_help=True), name)


__all__ = ["LAZY_GROUPS", "add_lazy_groups"]
