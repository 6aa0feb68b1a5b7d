"""The command-line options of the shared admission (`_admit`): start cap, sandbox limit,
capacity.

Rules:
- Each option has an environment default (``ROCK_AGENT_MAX_STARTS``,
  ``ROCK_AGENT_MAX_SANDBOXES``, ``ROCK_AGENT_CAPACITY``), so an agent that `ensure` or sshd
  starts takes them from its environment too.
- Capacity (cpus and memory) is enforced by default on a socket agent (the one agent of a host
  that several programs share) and not on a stdio agent (one program's private agent, whose
  core already counts the same capacity and which cannot see other private agents' creates in
  flight); ``--capacity on|off`` overrides. The start cap is always enforced.
- A bad value exits with argparse's one-line error and code 2.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from ._admit import DEFAULT_MAX_STARTS, Limits

MAX_LIMIT = 1_000_000


def _count(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if least <= value <= MAX_LIMIT:
            return value
        raise argparse.ArgumentTypeError(
            f"a whole number from {least} to {MAX_LIMIT} is needed, got {text!r}"
        )

    return parse


def _capacity(text: str) -> str:
    if text in ("auto", "on", "off"):
        return text
    raise argparse.ArgumentTypeError(f"auto, on or off is needed, got {text!r}")


def add_admission_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--max-starts``, ``--max-sandboxes`` and ``--capacity`` to `parser`."""
    env = os.environ
    parser.add_argument(
        "--max-starts",
        type=_count(1),
        default=env.get("ROCK_AGENT_MAX_STARTS", str(DEFAULT_MAX_STARTS)),
        metavar="N",
        help="creates in flight on this host, for every program that uses it (default:"
        f" $ROCK_AGENT_MAX_STARTS, else {DEFAULT_MAX_STARTS})",
    )
    parser.add_argument(
        "--max-sandboxes",
        type=_count(0),
        default=env.get("ROCK_AGENT_MAX_SANDBOXES", "0"),
        metavar="N",
        help="sandboxes on this host, all owners (0: no limit; default $ROCK_AGENT_MAX_SANDBOXES)",
    )
    parser.add_argument(
        "--capacity",
        type=_capacity,  # checks the environment's default too (`choices` would not)
        default=env.get("ROCK_AGENT_CAPACITY", "auto"),
        metavar="auto|on|off",
        help="refuse creates beyond the engine's cpus and memory, all owners counted (auto: on"
        " for a socket agent, off for a stdio one)",
    )


def limits_of(args: argparse.Namespace) -> Limits:
    """The `Limits` the parsed options ask for."""
    capacity = args.capacity == "on" or (args.capacity == "auto" and not args.stdio)
    return Limits(max_starts=args.max_starts, max_sandboxes=args.max_sandboxes, capacity=capacity)


__all__ = ["add_admission_options", "limits_of"]
