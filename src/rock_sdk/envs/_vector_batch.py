"""One round trip per env server for a vector step: the plans of the envs a server holds, batched.

`AsyncVectorEnv` hands each group of plans whose envs share an `EnvServer` to `run_batched`
(one task per server); envs that cannot be batched run their plans alone, as before.

Rules:
- The plans of one server advance in lockstep: each round trip carries the next call of
  every unfinished plan, so a vector step costs one round trip per server, plus one for the
  autoresets of the envs whose episode just ended (``SAME_STEP``), batched too.
- Errors stay with their env: a call refused here (`RemoteEnv._encode`) or failing in the
  sandbox ends that env's plan only. A round trip that fails as a whole (the server died,
  no reply in time, the link broke) fails the calls it carried, each as its env reports it
  (`RemoteEnv._failed`).
- The envs are marked busy for the whole run, as one call of their own would (see
  `SandboxEnv`), so a concurrent call on one of them is refused instead of interleaved.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

from rock_core import BadRequest

from ._autoreset import EnvCall, Plan, Transition
from ._env_server import EnvServer
from ._remote import RemoteEnv

__all__ = ["BatchJob", "run_batched"]

#: One env's part of a batched vector step: its position in the call, its plan, the env.
BatchJob = tuple[int, Plan, RemoteEnv]


async def run_batched(
    server: EnvServer,
    jobs: Sequence[BatchJob],
    results: MutableMapping[int, Transition],
    errors: MutableMapping[int, Exception],
) -> None:
    """Carry out `jobs` (envs on `server`) in lockstep; fill `results` or `errors` by position."""
    pending: list[tuple[int, Plan, RemoteEnv, EnvCall]] = []
    held: list[RemoteEnv] = []  # the envs this run marked busy (and only those it clears)
    try:
        for position, plan, env in jobs:
            if env._busy:  # a call of its own began after the vector looked
                errors[position] = BadRequest(
                    f"another call on this {type(env).__name__} is in progress; an"
                    " environment takes one call at a time"
                )
                continue
            env._busy = True
            held.append(env)
            try:
                pending.append((position, plan, env, next(plan)))
            except Exception as exc:  # the plan failed before its first call: this env only
                errors[position] = exc
        while pending:
            pending = await _round(server, pending, results, errors)
    finally:
        for env in held:
            env._busy = False
        for _, plan, _ in jobs:
            plan.close()


async def _round(
    server: EnvServer,
    pending: list[tuple[int, Plan, RemoteEnv, EnvCall]],
    results: MutableMapping[int, Transition],
    errors: MutableMapping[int, Exception],
) -> list[tuple[int, Plan, RemoteEnv, EnvCall]]:
    """One round trip: every pending call out, every plan fed; the calls still to make."""
    sent: list[tuple[int, Plan, RemoteEnv, EnvCall]] = []
    requests: list[str] = []
    for job in pending:
        try:
            requests.append(job[2]._encode(job[3]))
        except Exception as exc:  # refused before it left: this env only
            errors[job[0]] = exc
        else:
            sent.append(job)
    if not sent:
        return []
    timeout = max(env.step_timeout for _, _, env, _ in sent)
    try:
        outcomes: list[Any] = await server.batch(requests, timeout)
    except Exception as exc:  # the round trip failed: every call it carried did
        for position, _, env, _ in sent:
            errors[position] = env._failed(exc)
        return []
    following = []
    for (position, plan, env, call), outcome in zip(sent, outcomes, strict=True):
        try:
            following.append((position, plan, env, plan.send(env._decode(call, outcome))))
        except StopIteration as done:
            results[position] = done.value
        except Exception as exc:
            errors[position] = exc
    return following
