"""`RemoteEnv`: any registered environment, run inside a sandbox instead of in this process.

On the first reset the env takes a sandbox (see `SandboxEnv` for where from) and a server
there (`EnvServer`: a session running the JSON-lines server `_remote_server`, with the
environment code uploaded as one zip by `_bundle`), and asks it to build the environment in
a slot of its own. Every later reset and step is one line out and one line back. Alone, an
env has a server of its own; the envs of an `AsyncVectorEnv` share one per sandbox (see
`EnvServers`), and the vector sends all of a server's calls of a step as one batch. The
sandbox is kept for the env's whole life (episodes restart inside the server); `close` ends
its environment (and the server when it was the last one there) and gives the sandbox back,
deleting it unless it was the caller's.

Rules:
- The arguments are checked here before anything starts: the entry point must be a class
  or function defined in an importable module (not ``__main__``), and the keyword arguments
  must bind to it and be JSON values (tuples travel as lists). Seeds are ints or None, an
  action is a str, options are JSON values (no NaN): anything else is a `BadRequest` before
  the call leaves, as is a call longer than `MAX_LINE_BYTES`.
- Errors raised inside the sandbox come back as the same `RockError` class with the same
  message (other exceptions as `RockError` naming their type); the remote traceback is in
  the error's ``details["remote_traceback"]``. A server that dies raises `SandboxFailed`
  with the last of its output, to every env it held (at its next call); such an env is
  closed until a `reset` starts it again.
- A request that gets no reply within ``step_timeout`` seconds raises `TimedOut`; replies
  carry the request's number, so a late reply is never taken for the next one.
- A start that fails or is cancelled gives its sandbox back (leaving its server, deleting a
  sandbox it made) before it returns: that cleanup is shielded from the cancellation and
  bounded by `CLEANUP_TIMEOUT`; its own failure is logged, and the start's error is raised.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

import anyio

from rock_core import BadRequest, Cluster, RockError, SandboxFailed

from .._config import SandboxConfig
from .._sandbox import Sandbox
from ._autoreset import EnvCall, ResetCall, StepCall, Transition
from ._bundle import bundle_for
from ._env import ResetResult, StepResult
from ._env_server import CLEANUP_TIMEOUT, MAX_LINE_BYTES, EnvServer, EnvServers, unwrap
from ._registry import EnvSpec
from ._sandbox_env import SandboxEnv, SandboxSource

__all__ = ["DEFAULT_REMOTE_CONFIG", "RemoteEnv", "entry_point_name"]

log = logging.getLogger("rock_sdk.envs")

#: The sandbox a remote env gets when ``sandbox=True``: python3, a quarter of a cpu.
DEFAULT_REMOTE_CONFIG = SandboxConfig(image="python:3.11", cpus=0.25, memory="256m")


def entry_point_name(spec: EnvSpec) -> str:
    """The ``module:Name`` a sandbox can import `spec`'s entry point by."""
    entry = spec.entry_point
    if isinstance(entry, str):
        return entry
    module = getattr(entry, "__module__", None)
    qualname = getattr(entry, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        raise BadRequest(
            f"environment {spec.id!r}: its entry point {entry!r} has no importable name; "
            "register a class or function defined at the top of a module"
        )
    return f"{module}:{qualname}"


class RemoteEnv(SandboxEnv):
    """A registered environment stepped inside a sandbox (``make(id, sandbox=...)``).

    `sandbox` is a caller's `Sandbox` (used as is, in the caller's loop, never deleted;
    several envs may share one), a `SandboxFactory`, a `SandboxConfig`, or True for
    `DEFAULT_REMOTE_CONFIG`. With `cluster`, new sandboxes are made there; without a cluster
    or a `Sandbox`, the env runs its own loop and local agent so that the synchronous API
    works.
    """

    def __init__(
        self,
        spec: EnvSpec,
        kwargs: dict[str, Any] | None = None,
        *,
        sandbox: SandboxSource = True,
        cluster: Cluster | None = None,
        step_timeout: float = 60.0,
    ) -> None:
        arguments = {**spec.kwargs, **(kwargs or {})}
        self._entry_point = entry_point_name(spec)
        factory = spec.load()
        try:
            inspect.signature(factory).bind(**arguments)
        except TypeError as exc:
            raise BadRequest(f"environment {spec.id!r}: bad arguments {arguments}: {exc}") from exc
        except ValueError:  # no signature to check; the server will say
            pass
        try:
            json.dumps(arguments, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise BadRequest(
                f"environment {spec.id!r}: its arguments must be JSON values to reach the "
                f"sandbox: {exc}"
            ) from exc
        super().__init__(
            sandbox=sandbox,
            cluster=cluster,
            config=DEFAULT_REMOTE_CONFIG,
            borrow=True,
        )
        self.env_id = spec.id
        #: The keyword arguments the environment is built with inside the sandbox.
        self.kwargs = arguments
        self.step_timeout = step_timeout
        self._bundle = bundle_for(self._entry_point.partition(":")[0])
        self._servers = EnvServers()
        self._sandbox: Sandbox | None = None
        self._server: EnvServer | None = None
        self._slot = 0
        self._made = False  # the environment exists in its slot
        self._lost = False  # its server died under it: closed until a reset
        self._started = False  # an episode is in progress

    @property
    def sandbox(self) -> Sandbox | None:
        """The sandbox the environment runs in (None until the first reset)."""
        return self._sandbox

    def _holds_sandbox(self) -> bool:
        return self._sandbox is not None

    def _share_servers(self, servers: EnvServers) -> None:
        """Take servers from `servers` (a vector env's) instead of one of its own."""
        if self._sandbox is not None:
            raise BadRequest(f"{self.env_id}: it runs already; share servers before a reset")
        self._servers = servers

    # ---- one call: encoded here, answered by the server, decoded here ----------------------

    def _encode(self, call: EnvCall) -> str:
        """`call` as the server's JSON, or `BadRequest` if it cannot be made now."""
        if isinstance(call, ResetCall):
            seed = call.seed
            if seed is not None and type(seed) is not int:
                raise BadRequest(f"{self.env_id}: a seed is an int or None, got {seed!r}")
            request: dict[str, Any] = {"op": "reset", "env": self._slot, "seed": seed}
            if call.options is not None:
                if not isinstance(call.options, dict):
                    raise BadRequest(f"{self.env_id}: options are a dict, got {call.options!r}")
                request["options"] = call.options
        else:
            if not self._started:
                raise BadRequest(
                    f"{self.env_id}: no episode in progress; call reset() before step()"
                )
            if not isinstance(call.action, str):
                raise BadRequest(
                    f"{self.env_id}: an action is a string, got {type(call.action).__name__}"
                )
            request = {"op": "step", "env": self._slot, "action": call.action}
        try:
            text = json.dumps(request, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise BadRequest(f"{self.env_id}: the {request['op']} cannot be sent: {exc}") from exc
        if len(text) > MAX_LINE_BYTES:
            raise BadRequest(
                f"{self.env_id}: the {request['op']} is {len(text)} bytes as JSON, above the "
                f"limit of {MAX_LINE_BYTES} bytes"
            )
        return text

    def _decode(self, call: EnvCall, outcome: dict[str, Any]) -> Transition:
        """The transition an outcome of `call` carries, or the error it carries."""
        result = unwrap(outcome)
        try:
            if isinstance(call, ResetCall):
                observation, info = result
                self._started = True
                return Transition(observation, 0.0, False, False, info)
            observation, reward, terminated, truncated, info = result
            return Transition(observation, float(reward), bool(terminated), bool(truncated), info)
        except (TypeError, ValueError) as exc:
            op = "reset" if isinstance(call, ResetCall) else "step"
            raise RockError(
                f"{self.env_id}: the environment's {op} returned {str(result)[:200]}, which is "
                f"not what a {op} returns: {exc}"
            ) from exc

    def _failed(self, exc: Exception) -> Exception:
        """What this env raises for a round trip that failed with `exc` (a server that died
        marks it closed)."""
        if isinstance(exc, SandboxFailed) and self._server is not None and self._server.failure:
            self._lost = True
            return SandboxFailed(f"{self.env_id}: {exc}", **exc.details)
        return exc

    def _live_server(self) -> EnvServer:
        server = self._server
        if server is None or self._lost:
            why = " (its server exited; reset() starts it again)" if self._lost else ""
            raise BadRequest(f"{self.env_id}: the environment is closed{why}")
        return server

    def _batch_server(self) -> EnvServer | None:
        """The server a vector env may batch this env's next call on now, else None."""
        server = self._server
        if self._own_loop or self._closed or self._busy or self._lost or server is None:
            return None
        return server if server.running else None

    async def _call(self, call: EnvCall) -> Transition:
        request = self._encode(call)
        server = self._live_server()
        try:
            outcome = await server.call(request, self.step_timeout)
        except SandboxFailed as exc:
            failure = self._failed(exc)
            if failure is exc:
                raise
            raise failure from exc
        return self._decode(call, outcome)

    # ---- the environment ------------------------------------------------------------------

    async def _areset(self, seed: int | None, options: dict[str, Any] | None) -> ResetResult:
        call = ResetCall(seed, options)
        if self._server is None or self._lost:
            self._encode(call)  # bad arguments fail before anything starts
            if self._sandbox is not None:
                await self._aclose()  # its server died: start afresh
            await self._start()
        observation, _, _, _, info = await self._call(call)
        return observation, info

    async def _astep(self, action: str) -> StepResult:
        observation, reward, terminated, truncated, info = await self._call(StepCall(action))
        return observation, reward, terminated, truncated, info

    async def _aclose(self) -> None:
        sandbox, self._sandbox = self._sandbox, None
        server, self._server = self._server, None
        made, self._made = self._made, False
        self._started = self._lost = False
        if sandbox is None:
            return
        assert self.factory is not None
        try:
            if server is not None:
                farewell = json.dumps({"op": "close", "env": self._slot}) if made else None
                await self._servers.detach(server, self._slot, farewell=farewell)
        finally:
            await self.factory.release(sandbox)

    async def _start(self) -> None:
        assert self.factory is not None
        sandbox = await self.factory.acquire()
        self._sandbox = sandbox
        try:
            self._server, self._slot = await self._servers.attach(sandbox, self._bundle)
            make = {"op": "make", "env": self._slot, "entry_point": self._entry_point}
            make["kwargs"] = self.kwargs
            unwrap(await self._server.call(json.dumps(make), self.step_timeout))
            self._made = True
        except BaseException:
            # Shielded: a cancelled start must not leave its server or new sandbox behind.
            with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True) as cleanup:
                try:
                    await self._aclose()
                except RockError as exc:
                    log.warning(
                        "%s: giving back sandbox %s failed: %s",
                        self.env_id,
                        sandbox.sandbox_id,
                        exc,
                    )
            if cleanup.cancelled_caught:
                log.warning(
                    "%s: giving back sandbox %s took over %g s; left to its cluster",
                    self.env_id,
                    sandbox.sandbox_id,
                    CLEANUP_TIMEOUT,
                )
            raise

    def _sandbox_id(self) -> str:
        return self._sandbox.sandbox_id if self._sandbox is not None else "?"

    def __repr__(self) -> str:
        return f"<RemoteEnv {self.env_id} in {self._sandbox_id()}>"
