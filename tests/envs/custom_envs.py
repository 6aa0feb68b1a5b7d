"""Small environments defined outside the kit, for the in-sandbox tests (standard library only).

`RemoteEnv` ships this module's top-level package (``tests``) into the sandbox, so these
classes run there exactly as they are.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from rock_sdk.envs import Env


class EchoEnv(Env):
    """Echoes each action back; ``boom`` raises, ``die`` kills the process, ``noise`` prints,
    ``nap`` sleeps for two seconds first."""

    def __init__(self, greeting: str = "hello", max_turns: int = 3) -> None:
        super().__init__()
        self.greeting = greeting
        self.max_turns = max_turns
        self._turn = 0

    def reset(
        self, seed: int | None = None, *, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Greet; the info says where this runs."""
        self._turn = 0
        gymnasium_here = "gymnasium" in sys.modules
        return f"{self.greeting} {seed}", {"options": options, "gymnasium": gymnasium_here}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Echo `action` (or misbehave as the class docstring says)."""
        self._turn += 1
        if action == "boom":
            raise RuntimeError("the environment blew up")
        if action == "die":
            print("dying now", file=sys.stderr, flush=True)
            os._exit(3)
        if action == "nap":
            time.sleep(2)
        if action == "noise":
            print("noise on stdout\x1e not a reply")
        return action, 0.5, False, self._turn >= self.max_turns, {"turn": self._turn}
