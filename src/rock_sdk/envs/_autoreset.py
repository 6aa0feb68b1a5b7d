"""Autoreset bookkeeping for one sub-environment of a vector env, with no I/O.

A `Slot` turns "reset" and "step" requests into a plan: a generator that yields the calls to
make on the environment (`ResetCall`, `StepCall`), receives each call's `Transition`, and
returns the transition the vector env reports. The sync, async and process drivers all run
the same plans, so the autoreset rules live here only.

Rules:
- ``SAME_STEP`` (the default, GEM's): a step that ends an episode resets the environment
  at once. The reported observation and info are the new episode's; the reward and flags
  are the finished step's; ``info["final_obs"]`` and ``info["final_info"]`` hold the last
  observation and info of the finished episode.
- ``NEXT_STEP`` (gymnasium's default): a step that ends an episode is reported as it is.
  The next step of that environment ignores its action and resets instead, reporting the
  new episode's observation and info with reward 0.0 and both flags False.
- Autoresets pass no seed, so each environment continues its own random stream: a vector
  env reset with a seed replays identically.
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._env import Env

__all__ = [
    "AutoresetMode",
    "EnvCall",
    "Plan",
    "ResetCall",
    "Slot",
    "StepCall",
    "Transition",
    "arun_plan",
    "run_plan",
]


class AutoresetMode(enum.Enum):
    """When a vector env resets a sub-environment whose episode ended."""

    SAME_STEP = "same_step"
    NEXT_STEP = "next_step"


class Transition(NamedTuple):
    """One sub-environment's answer; a reset reports reward 0.0 and both flags False."""

    observation: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ResetCall:
    """Ask the environment to reset with this seed (and options)."""

    seed: int | None
    options: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StepCall:
    """Ask the environment to play this action."""

    action: str


EnvCall = ResetCall | StepCall
Plan = Generator[EnvCall, Transition, Transition]


class Slot:
    """The autoreset state of one sub-environment."""

    def __init__(self, mode: AutoresetMode) -> None:
        self.mode = mode
        self.reset_pending = False

    def reset(self, seed: int | None) -> Plan:
        """Plan an explicit reset."""
        self.reset_pending = False
        return (yield ResetCall(seed))

    def step(self, action: str) -> Plan:
        """Plan a step, with the autoreset the mode asks for."""
        if self.reset_pending:
            self.reset_pending = False
            return (yield ResetCall(None))
        result = yield StepCall(action)
        if not (result.terminated or result.truncated):
            return result
        if self.mode is AutoresetMode.NEXT_STEP:
            self.reset_pending = True
            return result
        fresh = yield ResetCall(None)
        info = {**fresh.info, "final_obs": result.observation, "final_info": result.info}
        return result._replace(observation=fresh.observation, info=info)


def _call(env: Env, call: EnvCall) -> Transition:
    if isinstance(call, ResetCall):
        observation, info = env.reset(call.seed)
        return Transition(observation, 0.0, False, False, info)
    observation, reward, terminated, truncated, info = env.step(call.action)
    return Transition(observation, float(reward), bool(terminated), bool(truncated), info)


async def _acall(env: Env, call: EnvCall) -> Transition:
    if isinstance(call, ResetCall):
        observation, info = await env.areset(call.seed)
        return Transition(observation, 0.0, False, False, info)
    observation, reward, terminated, truncated, info = await env.astep(call.action)
    return Transition(observation, float(reward), bool(terminated), bool(truncated), info)


def run_plan(plan: Plan, env: Env) -> Transition:
    """Carry out `plan` with the environment's synchronous methods."""
    call = next(plan)
    while True:
        try:
            call = plan.send(_call(env, call))
        except StopIteration as done:
            result: Transition = done.value
            return result


async def arun_plan(plan: Plan, env: Env) -> Transition:
    """Carry out `plan` with the environment's async twins."""
    call = next(plan)
    while True:
        try:
            call = plan.send(await _acall(env, call))
        except StopIteration as done:
            result: Transition = done.value
            return result
