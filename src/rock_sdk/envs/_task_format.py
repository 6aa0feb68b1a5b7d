"""The text conventions of task environments: reading actions, writing observations, scoring.

Actions (ROCK's Bash protocol, in tags a model writes easily):
- ``<bash>COMMAND</bash>`` runs COMMAND (stripped of surrounding blanks) in the task's shell.
- ``<submit/>`` ends the episode and runs the verifier; ``<submit>ANSWER</submit>`` does the
  same and hands ANSWER to the verifier (in the file ``$ROCK_ANSWER_FILE``).
- Only the tag that ends last counts, as with GEM's last ``\\boxed{}``: reasoning and earlier
  tags around it are ignored. A ``<bash>`` block ends at the first ``</bash>`` after it, so a
  tag quoted inside a command does not count on its own.
- An action with no complete tag is a format error.

Verifier scores:
- The last line of the verifier's output of the form ``ROCK_SCORE=P/Q`` (``P`` and ``Q``
  numbers, ``Q > 0``) or ``ROCK_SCORE=X`` (a number) gives the score P/Q or X, clipped to
  [0, 1]; ``P`` and ``Q`` are reported as the checks passed and run.
- Without such a line, the score is 1.0 if the verifier exited 0, else 0.0. A verifier that
  times out scores 0.0 whatever it printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Bash",
    "Score",
    "Submit",
    "parse_action",
    "score_verifier",
]

_TAGS = re.compile(
    r"<bash>(?P<command>.*?)</bash>|<submit\s*/>|<submit>(?P<answer>.*?)</submit>", re.DOTALL
)
_SCORE = re.compile(
    r"^ROCK_SCORE=\s*(?P<passed>\d+(?:\.\d+)?)\s*(?:/\s*(?P<total>\d+(?:\.\d+)?))?\s*$",
    re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class Bash:
    """Run a shell command."""

    command: str


@dataclass(frozen=True, slots=True)
class Submit:
    """End the episode and verify; `answer` is None for ``<submit/>``."""

    answer: str | None


def parse_action(text: str) -> Bash | Submit | None:
    """The action the last complete tag of `text` asks for, or None (a format error)."""
    last = None
    for last in _TAGS.finditer(text):  # noqa: B007  (the loop only finds the last match)
        pass
    if last is None:
        return None
    if last.group("command") is not None:
        return Bash(last.group("command").strip())
    answer = last.group("answer")
    return Submit(None if answer is None else answer.strip())


@dataclass(frozen=True, slots=True)
class Score:
    """The verifier's verdict: a score in [0, 1], and the checks counted if it said so."""

    score: float
    passed: float | None = None
    total: float | None = None


def score_verifier(output: str, exit_code: int | None, timed_out: bool) -> Score:
    """Score a verifier run by the rules of the module docstring."""
    if timed_out:
        return Score(0.0)
    for match in reversed(list(_SCORE.finditer(output))):
        passed = float(match.group("passed"))
        total_text = match.group("total")
        if total_text is None:
            return Score(min(1.0, passed))
        total = float(total_text)
        if total > 0:
            return Score(min(1.0, passed / total), passed, total)
    return Score(1.0 if exit_code == 0 else 0.0)
