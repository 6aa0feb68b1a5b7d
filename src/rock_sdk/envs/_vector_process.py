"""`ProcessVectorEnv`: the environments spread over worker processes, for CPU-heavy games.

Environment ``i`` lives in worker ``i % num_workers``. A call sends each worker involved one
message listing its environments' work, then waits for every reply, so workers compute in
parallel and pipes never fall out of step. Workers run the same autoreset plans as the other
vector envs.

Worker protocol (pickled tuples over a `multiprocessing` pipe):
- worker -> parent, once at start: ``("ready", None)`` or ``("error", exception)``.
- parent -> worker: ``("reset", [(index, seed), ...])``, ``("step", [(index, action), ...])``
  or ``("close", None)``; the worker answers the first two with ``("ok", [Transition, ...])``
  or ``("error", exception)`` and exits after the third.

Workers start with the ``forkserver`` method where the platform has it, else ``spawn`` (never
``fork``: forking a threaded parent is unsafe). As with any non-fork start method, a script
that builds one must guard its entry point with ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
import weakref
from collections.abc import Iterable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, NoReturn

import anyio.to_thread

from rock_core import BadRequest, RockError, TransportError

from ._autoreset import AutoresetMode, Slot, Transition, run_plan
from ._env import Env
from ._make import build
from ._registry import EnvSpec
from ._vector import SeedArg, VectorEnv, VectorReset, VectorStep

__all__ = ["ProcessVectorEnv"]

_JOIN_TIMEOUT = 5.0


class ProcessVectorEnv(VectorEnv):
    """Several environments stepped in parallel worker processes.

    Always close it (``with ProcessVectorEnv(...) as envs:``, or `close`); workers are
    daemons, so they also die with the parent. One call runs at a time: concurrent calls
    from several threads wait for each other. The async twins run the blocking call in a
    worker thread, so an event loop stays responsive.
    """

    _in_process = False

    def __init__(
        self,
        env_ids: str | Sequence[str],
        num_envs: int | None = None,
        *,
        num_workers: int | None = None,
        context: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
        **env_kwargs: Any,
    ) -> None:
        super().__init__(env_ids, num_envs, autoreset_mode=autoreset_mode, **env_kwargs)
        workers = num_workers if num_workers is not None else os.cpu_count() or 1
        if workers < 1:
            raise BadRequest(f"num_workers must be at least 1, got {workers}")
        workers = min(workers, self.num_envs)
        method = context or _default_start_method()
        usable = [
            m for m in ("forkserver", "spawn") if m in multiprocessing.get_all_start_methods()
        ]
        if method not in usable:
            raise BadRequest(f"start method {method!r} is not usable here; choose one of {usable}")
        mp = (
            multiprocessing.get_context("forkserver")
            if method == "forkserver"
            else multiprocessing.get_context("spawn")
        )
        #: How many worker processes hold the environments.
        self.num_workers = workers
        self._lock = threading.Lock()
        self._closed = False
        self._conns: list[Connection] = []
        self._procs: list[BaseProcess] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._conns, self._procs)
        try:
            for worker in range(workers):
                assigned = [
                    (index, self.specs[index], env_kwargs)
                    for index in range(worker, self.num_envs, workers)
                ]
                parent_end, child_end = mp.Pipe()
                self._conns.append(parent_end)
                process = mp.Process(
                    target=_worker_main,
                    args=(child_end, assigned, self.autoreset_mode),
                    name=f"rock-envs-worker-{worker}",
                    daemon=True,
                )
                try:
                    process.start()
                except (pickle.PicklingError, AttributeError, TypeError) as exc:
                    raise BadRequest(
                        f"ProcessVectorEnv sends its environments' specs and arguments to "
                        f"the workers, and they must pickle: {exc}"
                    ) from exc
                finally:
                    child_end.close()
                self._procs.append(process)
            self._receive_all(range(workers))
        except BaseException:
            self.close()
            raise

    def reset(self, seed: SeedArg = None, indices: Sequence[int] | None = None) -> VectorReset:
        """Reset every environment (or those at `indices`); seeds as `VectorEnv` says."""
        return self._reset_result(self._run("reset", self._reset_calls(seed, indices)))

    def step(self, actions: Sequence[str], indices: Sequence[int] | None = None) -> VectorStep:
        """Step every environment (or those at `indices`) with one action each."""
        return self._step_result(self._run("step", self._step_calls(actions, indices)))

    def close(self) -> None:
        """Stop the workers (asking first, then terminating); calling it again is fine."""
        self._closed = True
        self._finalizer()

    async def areset(
        self, seed: SeedArg = None, indices: Sequence[int] | None = None
    ) -> VectorReset:
        """Async twin of `reset`, waiting in a thread."""
        return await anyio.to_thread.run_sync(self.reset, seed, indices)

    async def astep(
        self, actions: Sequence[str], indices: Sequence[int] | None = None
    ) -> VectorStep:
        """Async twin of `step`, waiting in a thread."""
        return await anyio.to_thread.run_sync(self.step, actions, indices)

    async def aclose(self) -> None:
        """Async twin of `close`, waiting in a thread."""
        await anyio.to_thread.run_sync(self.close)

    def _run(self, command: str, calls: Sequence[tuple[int, Any]]) -> list[Transition]:
        by_worker: dict[int, list[tuple[int, Any]]] = {}
        for index, argument in calls:
            by_worker.setdefault(index % self.num_workers, []).append((index, argument))
        with self._lock:
            if self._closed:
                raise BadRequest("this ProcessVectorEnv is closed")
            for worker, work in by_worker.items():
                try:
                    self._conns[worker].send((command, work))
                except (OSError, ValueError) as exc:
                    self._broken(worker, exc)
            replies = self._receive_all(by_worker)
        results = {
            index: transition
            for worker, work in by_worker.items()
            for (index, _), transition in zip(work, replies[worker], strict=True)
        }
        return [results[index] for index, _ in calls]

    def _receive_all(self, workers: Iterable[int]) -> dict[int, Any]:
        """Every worker's reply; the first error is raised once all have answered."""
        replies: dict[int, Any] = {}
        error: BaseException | None = None
        for worker in workers:
            try:
                status, payload = self._conns[worker].recv()
            except (EOFError, OSError) as exc:
                self._broken(worker, exc)
            if status == "error" and error is None:
                error = payload
            replies[worker] = payload
        if error is not None:
            raise error
        return replies

    def _broken(self, worker: int, cause: BaseException) -> NoReturn:
        self._closed = True
        process = self._procs[worker]
        process.join(0.1)
        self._finalizer()
        raise TransportError(
            f"environment worker {worker} is gone (exit code {process.exitcode}); "
            "the vector env is closed"
        ) from cause


def _default_start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _shutdown(conns: list[Connection], procs: list[BaseProcess]) -> None:
    for conn in conns:
        try:
            conn.send(("close", None))
        except (OSError, ValueError):
            pass
    for process in procs:
        process.join(_JOIN_TIMEOUT)
        if process.is_alive():
            process.terminate()
            process.join(_JOIN_TIMEOUT)
    for conn in conns:
        conn.close()


def _worker_main(
    conn: Connection,
    assigned: list[tuple[int, EnvSpec, dict[str, Any]]],
    mode: AutoresetMode,
) -> None:
    """A worker's life: build its environments, then serve requests until told to close."""
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    envs: dict[int, Env] = {}
    try:
        try:
            for index, spec, kwargs in assigned:
                envs[index] = build(spec, **kwargs)
        except Exception as exc:
            conn.send(("error", _portable(exc)))
            return
        slots = {index: Slot(mode) for index in envs}
        conn.send(("ready", None))
        while True:
            try:
                command, work = conn.recv()
            except EOFError:
                return
            if command == "close":
                return
            try:
                if command == "reset":
                    done = [run_plan(slots[i].reset(seed), envs[i]) for i, seed in work]
                else:
                    done = [run_plan(slots[i].step(action), envs[i]) for i, action in work]
            except Exception as exc:
                conn.send(("error", _portable(exc)))
            else:
                conn.send(("ok", done))
    finally:
        for env in envs.values():
            env.close()
        conn.close()


def _portable(exc: Exception) -> Exception:
    """`exc` itself if it survives pickling, else a `RockError` carrying its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RockError(f"{type(exc).__name__}: {exc}")
    return exc
