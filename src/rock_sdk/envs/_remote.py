"""`RemoteEnv`: any registered environment, run inside a sandbox instead of in this process.

On the first reset the env takes a sandbox (see `SandboxEnv` for where from), opens a
session of its own in it, uploads the environment code as one zip (`_bundle`), starts the
JSON-lines server (`_remote_server`) with `Sandbox.start_interactive`, and asks it to build
the environment. Every later reset and step is one line out and one line back. The sandbox
is kept for the env's whole life (episodes restart inside the server); `close` ends the
server and deletes the sandbox, unless it was the caller's (then only the session goes).

Rules:
- The arguments are checked here before anything starts: the entry point must be a class
  or function defined in an importable module (not ``__main__``), and the keyword arguments
  must bind to it and be JSON values (tuples travel as lists).
- Errors raised inside the sandbox come back as the same `RockError` class with the same
  message (other exceptions as `RockError` naming their type); the remote traceback is in
  the error's ``details["remote_traceback"]``. A server that dies raises `SandboxFailed`
  with the last of its output.
- A request that gets no reply within ``step_timeout`` seconds raises `TimedOut`; replies
  carry the request's number, so a late reply is never taken for the next one.
- A start that fails or is cancelled gives its sandbox back (ending its session, deleting a
  sandbox it made) before it returns: that cleanup is shielded from the cancellation and
  bounded by `CLEANUP_TIMEOUT`; its own failure is logged, and the start's error is raised.
"""

from __future__ import annotations

import inspect
import json
import logging
import secrets
from typing import Any

import anyio

from rock_core import BadRequest, Cluster, RockError, SandboxFailed
from rock_core.protocol import error_from_code

from .._config import SandboxConfig
from .._interactive import InteractiveProcess
from .._sandbox import Sandbox
from ._bundle import bundle_for
from ._env import ResetResult, StepResult
from ._registry import EnvSpec
from ._remote_server import REPLY_PATTERN, REPLY_PREFIX
from ._sandbox_env import SandboxEnv, SandboxSource

__all__ = ["DEFAULT_REMOTE_CONFIG", "RemoteEnv", "entry_point_name"]

log = logging.getLogger("rock_sdk.envs")

#: The sandbox a remote env gets when ``sandbox=True``: python3, a quarter of a cpu.
DEFAULT_REMOTE_CONFIG = SandboxConfig(image="python:3.11", cpus=0.25, memory="256m")

#: Seconds a failed or cancelled start may spend giving its sandbox back.
CLEANUP_TIMEOUT = 30.0

_BOOT = (
    'python3 -u -c \'import sys; sys.path.insert(0, "{path}"); '
    "from rock_sdk.envs._remote_server import main; main()'"
)


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
    several envs may share one, each in its own session), a `SandboxFactory`, a
    `SandboxConfig`, or True for `DEFAULT_REMOTE_CONFIG`. With `cluster`, new sandboxes are
    made there; without a cluster or a `Sandbox`, the env runs its own loop and local agent
    so that the synchronous API works.
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
        self._make_request = {"op": "make", "entry_point": self._entry_point, "kwargs": arguments}
        try:
            json.dumps(self._make_request)
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
        self._sandbox: Sandbox | None = None
        self._process: InteractiveProcess | None = None
        self._session = f"env-{secrets.token_hex(4)}"
        self._request = 0
        self._started = False

    @property
    def sandbox(self) -> Sandbox | None:
        """The sandbox the environment runs in (None until the first reset)."""
        return self._sandbox

    def _holds_sandbox(self) -> bool:
        return self._sandbox is not None

    async def _areset(self, seed: int | None, options: dict[str, Any] | None) -> ResetResult:
        if self._process is None:
            await self._start()
        observation, info = await self._call({"op": "reset", "seed": seed, "options": options})
        self._started = True
        return observation, info

    async def _astep(self, action: str) -> StepResult:
        if not self._started:
            raise BadRequest(f"{self.env_id}: no episode in progress; call reset() before step()")
        if not isinstance(action, str):
            raise BadRequest(f"{self.env_id}: an action is a string, got {type(action).__name__}")
        observation, reward, terminated, truncated, info = await self._call(
            {"op": "step", "action": action}
        )
        return observation, float(reward), bool(terminated), bool(truncated), info

    async def _aclose(self) -> None:
        sandbox, self._sandbox = self._sandbox, None
        process, self._process = self._process, None
        self._started = False
        if sandbox is None:
            return
        assert self.factory is not None
        try:
            if process is not None:
                await sandbox.close_session(self._session)
        finally:
            await self.factory.release(sandbox)

    async def _start(self) -> None:
        assert self.factory is not None
        sandbox = await self.factory.acquire()
        self._sandbox = sandbox
        try:
            await sandbox.create_session(self._session)
            bundle = self._bundle
            present = await sandbox.arun(f"test -s {bundle.path}", self._session, timeout=30)
            if not present.ok:
                # Written aside then renamed: envs sharing the sandbox never see half a file.
                partial = f"{bundle.path}.{self._session}"
                await sandbox.write_file(partial, bundle.data)
                await sandbox.arun(
                    f"mv -f {partial} {bundle.path}", self._session, timeout=30, check=True
                )
            self._process = await sandbox.start_interactive(
                _BOOT.format(path=bundle.path), self._session
            )
            await self._call(dict(self._make_request))
        except BaseException:
            # Shielded: a cancelled start must not leave its session or new sandbox behind.
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

    async def _call(self, request: dict[str, Any]) -> Any:
        process = self._process
        if process is None:
            raise BadRequest(f"{self.env_id}: the environment is closed")
        self._request += 1
        number = self._request
        request["id"] = number
        await process.sendline(json.dumps(request))
        while True:
            found = await process.expect(REPLY_PATTERN, timeout=self.step_timeout)
            if found.before.strip():
                log.debug("%s printed: %s", self.env_id, found.before.rstrip())
            if found.index < 0:
                self._process = None
                raise SandboxFailed(
                    f"{self.env_id}: the environment server in sandbox "
                    f"{self._sandbox_id()} exited: {found.before.strip()[-2000:] or 'no output'}"
                )
            reply = json.loads(found.match[len(REPLY_PREFIX) :])
            if reply.get("id") in (number, None):  # None: the server failed before reading
                break
        if not reply["ok"]:
            raise error_from_code(
                reply["code"], reply["message"], {"remote_traceback": reply.get("traceback", "")}
            )
        return reply["result"]

    def _sandbox_id(self) -> str:
        return self._sandbox.sandbox_id if self._sandbox is not None else "?"

    def __repr__(self) -> str:
        return f"<RemoteEnv {self.env_id} in {self._sandbox_id()}>"
