"""Environments whose work happens in sandboxes: async first, with a synchronous API on top.

Rules:
- A `SandboxFactory` hands out started sandboxes (`acquire`) and takes them back (`release`).
  `ColdStart`, the default, creates one on a cluster per `acquire` and deletes it on
  `release`; a warm pool plugs in by implementing the same two methods.
- Where an environment runs (its *home* loop) is fixed when it is built:
  - given a cluster, a factory or a caller's `Sandbox`, it lives in the caller's event loop:
    the async twins (`areset`, `astep`, `aclose`) run right there, with no thread, so
    thousands of them in one loop stay cheap. The synchronous methods cannot reach that loop
    and raise `BadRequest` (``close()`` is allowed while the env holds nothing).
  - given none of these, it owns everything: on first use it starts an event loop in a
    daemon thread (`LoopThread`), opens a cluster with a local agent there, and runs every
    call in that loop: the synchronous methods block on it, the async twins wait for it in
    a worker thread. `close()` / `aclose()` delete its sandboxes and stop the loop; a
    forgotten env is cleaned up when it is garbage-collected or the program exits.
- One call at a time per environment: a call made while another is in flight raises
  `BadRequest` instead of interleaving their I/O.
"""

from __future__ import annotations

import threading
import weakref
from functools import partial
from typing import Any, Protocol, runtime_checkable

import anyio.to_thread

from rock_core import BadRequest, Cluster, open_cluster

from .._config import SandboxConfig
from .._loop_thread import LoopThread
from .._sandbox import Sandbox
from ._env import Env, ResetResult, StepResult

__all__ = ["ColdStart", "SandboxEnv", "SandboxFactory", "SandboxSource"]


@runtime_checkable
class SandboxFactory(Protocol):
    """Where sandbox-backed environments get their sandboxes (the seam for warm pools)."""

    async def acquire(self) -> Sandbox:
        """A started sandbox, the caller's to use until it hands it back to `release`."""
        ...

    async def release(self, sandbox: Sandbox) -> None:
        """Take back a sandbox from `acquire` (a cold start deletes it)."""
        ...


class ColdStart:
    """The default `SandboxFactory`: a new sandbox from `config` per acquire, deleted on release."""

    def __init__(self, config: SandboxConfig, cluster: Cluster) -> None:
        self.config = config
        self.cluster = cluster

    async def acquire(self) -> Sandbox:
        """Create and start a sandbox on the cluster."""
        return await Sandbox(self.config, cluster=self.cluster).start()

    async def release(self, sandbox: Sandbox) -> None:
        """Delete the sandbox."""
        await sandbox.delete()

    def __repr__(self) -> str:
        return f"ColdStart({self.config.image!r})"


class _Borrowed:
    """A caller's own sandbox, lent as it is: released means given back, never deleted."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    async def acquire(self) -> Sandbox:
        return await self.sandbox.start()

    async def release(self, sandbox: Sandbox) -> None:
        return None


#: What ``sandbox=`` may be: a caller's `Sandbox` (used as is, never deleted), a
#: `SandboxFactory`, a `SandboxConfig` or True (fresh sandboxes the env deletes), or None.
SandboxSource = Sandbox | SandboxFactory | SandboxConfig | bool | None


class SandboxEnv(Env):
    """Base of the environments that act in sandboxes (`TaskEnv`, `RemoteEnv`).

    Subclasses implement `_areset`, `_astep` and `_aclose` as coroutines; this class gives
    them the async twins and the synchronous methods, in the home loop the module docstring
    describes. See `SandboxFactory` for where sandboxes come from.
    """

    def __init__(
        self,
        *,
        sandbox: SandboxSource,
        cluster: Cluster | None,
        config: SandboxConfig,
        borrow: bool,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode)
        self._loop: LoopThread | None = None
        self._loop_lock = threading.Lock()
        self._busy = False
        self._closed = False
        self._finalizer: weakref.finalize[Any, Any] | None = None
        factory: SandboxFactory | None
        if isinstance(sandbox, Sandbox):
            if not borrow:
                raise BadRequest(
                    f"{type(self).__name__} starts a fresh sandbox per episode, so it cannot "
                    "use a given Sandbox; pass a SandboxFactory, a SandboxConfig or a cluster"
                )
            factory = _Borrowed(sandbox)
        elif isinstance(sandbox, SandboxConfig):
            config = sandbox
            factory = None if cluster is None else ColdStart(config, cluster)
        elif sandbox is None or isinstance(sandbox, bool):
            factory = None if cluster is None else ColdStart(config, cluster)
        elif isinstance(sandbox, SandboxFactory):
            factory = sandbox
        else:
            raise BadRequest(
                "sandbox= takes a Sandbox, a SandboxFactory, a SandboxConfig or True, "
                f"got {sandbox!r}"
            )
        #: Where this environment's sandboxes come from; set on first use when it owns its loop.
        self.factory: SandboxFactory | None = factory
        self._config = config
        self._own_loop = factory is None

    # ---- what subclasses supply ----------------------------------------------------------

    async def _areset(self, seed: int | None, options: dict[str, Any] | None) -> ResetResult:
        raise NotImplementedError

    async def _astep(self, action: str) -> StepResult:
        raise NotImplementedError

    async def _aclose(self) -> None:
        raise NotImplementedError

    def _holds_sandbox(self) -> bool:
        """Whether a sandbox is acquired right now (and so `close` has work to do)."""
        raise NotImplementedError

    # ---- the public API --------------------------------------------------------------------

    def reset(
        self, seed: int | None = None, *, options: dict[str, Any] | None = None
    ) -> ResetResult:
        """Start an episode (see the subclass); blocks on the environment's own loop."""
        result: ResetResult = self._blocking("reset", self._areset, seed, options)
        return result

    def step(self, action: str) -> StepResult:
        """Play one action; blocks on the environment's own loop."""
        result: StepResult = self._blocking("step", self._astep, action)
        return result

    def close(self) -> None:
        """Give back every sandbox (deleting those it made) and stop its loop, if any."""
        if self._own_loop:
            with self._loop_lock:
                loop, self._loop = self._loop, None
                self._closed = True
            if loop is not None:
                try:
                    loop.call(self._guarded, self._aclose)
                finally:
                    loop.stop()
                    if self._finalizer is not None:
                        self._finalizer.detach()
        elif self._holds_sandbox():
            raise self._not_home("close")

    async def areset(
        self, seed: int | None = None, *, options: dict[str, Any] | None = None
    ) -> ResetResult:
        """Async twin of `reset`."""
        result: ResetResult = await self._async("reset", self._areset, seed, options)
        return result

    async def astep(self, action: str) -> StepResult:
        """Async twin of `step`."""
        result: StepResult = await self._async("step", self._astep, action)
        return result

    async def aclose(self) -> None:
        """Async twin of `close`."""
        if self._own_loop:
            await anyio.to_thread.run_sync(self.close)
        else:
            self._closed = True
            await self._guarded(self._aclose)

    # ---- running calls in the home loop -----------------------------------------------------

    def _blocking(self, method: str, func: Any, *args: Any) -> Any:
        if not self._own_loop:
            raise self._not_home(method)
        return self._start_loop().call(self._guarded, func, *args)

    async def _async(self, method: str, func: Any, *args: Any) -> Any:
        if self._own_loop:
            return await anyio.to_thread.run_sync(partial(self._blocking, method, func, *args))
        if self._closed:
            raise BadRequest(f"this {type(self).__name__} is closed")
        return await self._guarded(func, *args)

    async def _guarded(self, func: Any, *args: Any) -> Any:
        if self._busy:
            raise BadRequest(
                f"another call on this {type(self).__name__} is in progress; an environment "
                "takes one call at a time"
            )
        self._busy = True
        try:
            return await func(*args)
        finally:
            self._busy = False

    def _start_loop(self) -> LoopThread:
        with self._loop_lock:
            if self._loop is not None:
                return self._loop
            if self._closed:
                raise BadRequest(f"this {type(self).__name__} is closed")
            return self._open_loop()

    def _open_loop(self) -> LoopThread:
        loop = LoopThread(
            "rock-envs-loop",
            on_own_loop="a synchronous environment method was called from inside the "
            "environment's own event loop; use the async twins (areset, astep, aclose) there",
        )
        try:
            cluster = loop.enter(open_cluster(["local"]))
        except BaseException:
            loop.stop()
            raise
        self.factory = ColdStart(self._config, cluster)
        self._loop = loop
        self._finalizer = weakref.finalize(self, loop.stop)
        return loop

    def _not_home(self, method: str) -> BadRequest:
        return BadRequest(
            f"this {type(self).__name__} runs in the event loop of the cluster, factory or "
            f"sandbox it was given; call `await env.a{method}(...)` in that loop (or build it "
            "without one to use the synchronous API)"
        )
