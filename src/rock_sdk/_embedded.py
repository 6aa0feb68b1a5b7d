"""One embedded local cluster per event loop, shared by every stand-alone `Sandbox`.

Rules:
- A `Sandbox` given no cluster borrows its event loop's shared cluster (``open_cluster(["local"])``:
  one local agent process for all of them) and gives it back when it is deleted (or when its
  start fails). The last one to give it back closes it, and waits until it is closed: its
  sandboxes are deleted and its agent has exited. A borrower that comes while it closes waits,
  then opens a new one.
- The cluster is opened and closed by a task of its own that no caller owns: an asyncio `Task`
  kept referenced here, or a trio system task. No caller's task group or cancel scope holds it,
  so any task may start, use or delete any stand-alone sandbox, and a caller's cancellation
  never reaches it.
- That task never raises: an error opening the cluster goes to the borrowers waiting for it,
  and it ends quietly when cancelled.
- When the event loop ends with sandboxes still borrowed (a program that returned without
  deleting them), the loop cancels that task, and it deletes them before it ends. Under trio
  the cluster runs shielded, so it closes as usual (deleting them). asyncio cancels every task
  at once, the cluster's own among them, so their link is gone: a new link to a new local
  agent (as the same owner) adopts them and deletes them. When the program is killed
  instead, its local agent removes them once its process is gone.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

import anyio
import sniffio

from rock_core import (
    Cluster,
    RockError,
    SandboxState,
    TransportError,
    open_cluster,
    unwrap_single_errors,
)
from rock_core.defaults import CLEANUP_TIMEOUT

log = logging.getLogger("rock_sdk")

_shared: weakref.WeakKeyDictionary[object, SharedCluster] = weakref.WeakKeyDictionary()


class SharedCluster:
    """The event loop's shared local cluster and its borrowers; see the module's rules."""

    def __init__(self) -> None:
        self.cluster: Cluster | None = None
        self.borrowers = 0
        self.closing = False
        self._error: BaseException | None = None
        self._ready = anyio.Event()
        self._release = anyio.Event()
        self._closed = anyio.Event()
        self._task: object = None  # the asyncio task, kept referenced while it runs

    async def _run(self, key: object) -> None:
        """Open the cluster, hold it until the last borrower gives it back (or the event loop
        ends), close it. Never raises."""
        try:
            with unwrap_single_errors():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watch_loop_end)
                    with anyio.CancelScope(shield=True):  # trio: the loop's end reaches the watch
                        await self._serve()
                    tg.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            pass  # asyncio's loop end cancels every task: `_serve` cleaned up what it could
        except (KeyboardInterrupt, SystemExit):
            raise  # asyncio only: a trio system task never sees them
        except BaseException as exc:  # never out of this task: the borrowers get it
            self._error = exc
        finally:
            self.cluster = None
            self.closing = True
            if _shared.get(key) is self:
                del _shared[key]
            self._ready.set()
            self._closed.set()
            self._task = None

    async def _watch_loop_end(self) -> None:
        """Release the cluster when the event loop ends (it cancels this task)."""
        try:
            await anyio.sleep_forever()
        finally:
            self._release.set()

    async def _serve(self) -> None:
        async with open_cluster(["local"]) as cluster:
            self.cluster = cluster
            self._ready.set()
            try:
                await self._release.wait()
            except anyio.get_cancelled_exc_class():
                # asyncio ends a loop by cancelling all its tasks at once, the cluster's own
                # among them: its link is gone, so a fresh one deletes what is left.
                await _delete_left_over(cluster)
                raise

    async def give_back(self) -> None:
        """One borrower is done; the last one closes the cluster and waits until it is closed.

        Shielded: a cancelled caller must not leave the cluster (and its agent) behind.
        """
        self.borrowers -= 1
        if self.borrowers > 0:
            return
        self.closing = True
        self._release.set()
        with anyio.CancelScope(shield=True):
            await self._closed.wait()


async def _delete_left_over(cluster: Cluster) -> None:
    """Delete the sandboxes of `cluster` through a new link to a new local agent (their owner's:
    connecting adopts them, closing deletes them). Shielded and bounded."""
    if all(record.state is SandboxState.DELETED for record in cluster.records()):
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT):
        try:
            async with open_cluster(["local"], owner=cluster.owner):
                pass
        except RockError as exc:
            log.warning("could not delete the sandboxes left at the event loop's end: %s", exc)


async def borrow() -> SharedCluster:
    """The event loop's shared local cluster, opened if needed; `give_back()` it when done."""
    key = _loop_key()
    while True:
        shared = _shared.get(key)
        if shared is not None and shared.closing:
            await shared._closed.wait()
            continue
        if shared is None:
            shared = _shared[key] = SharedCluster()
            _spawn(shared, key)
        break
    shared.borrowers += 1
    try:
        await shared._ready.wait()
    except BaseException:
        await shared.give_back()
        raise
    if shared.cluster is None:
        await shared.give_back()
        error = shared._error
        if error is None:  # closed by the event loop's end as we waited
            raise TransportError("the shared local cluster closed: the event loop is ending")
        raise error
    return shared


def _loop_key() -> object:
    """The running event loop (asyncio) or run (trio): one shared cluster each."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token()
    return asyncio.get_running_loop()


def _spawn(shared: SharedCluster, key: object) -> None:
    """Start the shared cluster's own task, owned by no caller."""
    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(shared._run, key, name="rock_sdk shared local cluster")
        return
    shared._task = asyncio.get_running_loop().create_task(
        shared._run(key), name="rock_sdk shared local cluster"
    )


__all__ = ["SharedCluster", "borrow"]
