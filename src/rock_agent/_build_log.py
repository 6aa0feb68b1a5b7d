"""The progress of an image build, read as text: its steps, its last lines, what a failure means.

Rules:
- No I/O: a runtime feeds the build's output as it arrives (`feed`) and asks for the error to
  raise when the build fails (`failure`). The Docker runtime and the fake both use it, so a
  failed build reads the same on either.
- Only the last `KEEP` lines are kept (a build may print megabytes), each cut to `LINE_MAX`
  characters; blank lines are dropped.
- A step is announced by a line ``Step N/M : INSTRUCTION arguments`` (as the engine's classic
  builder words it; the fake says the same), or ``STEP N/M: ...`` (Podman's buildah).
- A failure at a ``FROM`` step is `ImageNotFound` naming the base image (it is neither here nor
  to be pulled); any other is `BadRequest` naming the step. Both messages end with the last
  lines, which they also carry as the ``output`` detail (one string: details crossing the wire
  are plain values), with ``step`` and ``image``.
"""

from __future__ import annotations

import re
from collections import deque

from rock_core import BadRequest, ImageNotFound, RockError

KEEP = 20  # output lines kept for the reply and for errors
LINE_MAX = 500  # characters kept of one line
_STEP = re.compile(r"^(?:Step \d+/\d+ :|STEP \d+/\d+:) (\S+)\s*(.*)$")  # Docker; Podman


class BuildLog:
    """The last lines of one build's output and the step it is at."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.step = ""  # "Step N/M : ..." of the step running now; "" before the first
        self.instruction = ""  # that step's instruction, upper case ("FROM", "RUN", ...)
        self.argument = ""  # the rest of its line
        self._lines: deque[str] = deque(maxlen=KEEP)
        self._partial = ""

    def feed(self, text: str) -> None:
        """Take more output (any cut: a line may arrive in pieces)."""
        *done, self._partial = (self._partial + text).split("\n")
        for line in done:
            self._line(line)

    def _line(self, raw: str) -> None:
        line = raw.rstrip("\r").rstrip()
        if not line.strip():
            return
        line = line[:LINE_MAX]
        self._lines.append(line)
        found = _STEP.match(line)
        if found:
            self.step, self.instruction, self.argument = line, found[1].upper(), found[2]

    @property
    def lines(self) -> list[str]:
        """The last lines of output (at most `KEEP`)."""
        if self._partial.strip():
            return [*self._lines, self._partial.rstrip()[:LINE_MAX]][-KEEP:]
        return list(self._lines)

    def failure(self, reason: str) -> RockError:
        """The error for a build that failed with `reason` (the engine's words), see the rules."""
        reason = reason.strip() or "the build failed"
        lines = self.lines
        tail = "\n".join(f"  {line}" for line in lines)
        last = f"\nlast output lines:\n{tail}" if tail else ""
        details = {"step": self.step, "output": "\n".join(lines), "image": self.tag}
        if self.instruction == "FROM":
            base = self.argument.split()[0] if self.argument.split() else self.argument
            return ImageNotFound(
                f"building {self.tag}: base image {base} is not on this host and could not be "
                f"pulled ({reason}); pull or build it first{last}",
                **details,
            )
        where = f"{self.step} failed" if self.step else "failed before its first step"
        return BadRequest(f"building {self.tag}: {where}: {reason}{last}", **details)


__all__ = ["KEEP", "LINE_MAX", "BuildLog"]
