"""One fake sandbox: its record, its folder, its main process and the processes run in it.

Rules:
- A running sandbox has a main process (`KEEPALIVE`: `cat` on a pipe this process holds, so
  it ends with this process too), as a container has its init. `stop` sends it SIGTERM, waits
  up to the timeout, then SIGKILLs every process of the sandbox: those started here by their
  handle (a process that is just starting may not show its mark yet), then all that carry
  the mark, those that left the tree too (`_fake_procs.kill_marked`). The sandbox's exit code
  is its main process's, as the engine reports it.
- A main process that ends on its own (killed from outside, say) stops the sandbox, as a
  container stops when its init exits: `settle` (the runtime calls it before it answers)
  SIGKILLs what is left and takes the main process's exit code. `crash` ends a sandbox with a
  given exit code, OOM-killed or not (the engine's `OOMKilled`, cleared by the next start).
- Processes get this host's PATH, `HOME` at the sandbox's folder, `HOSTNAME`, then the spec's
  environment, then the call's; their working folder defaults to the spec's `workdir`.
- This module only does what it is told: the ownership rules, the events and the errors for
  unknown sandboxes are the runtime's (`_fake_runtime`).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Mapping
from pathlib import Path

import anyio

from rock_core import BadRequest, SandboxFailed
from rock_core.protocol import SandboxInfo, SandboxSpec

from . import _fake_files, _fake_freezer, _fake_procs, _fake_term, _procs
from ._fake_logs import ContainerLog
from ._fake_procs import FakeProcess
from ._labels import LABEL_OWNER, owner_uid
from ._runtime import ContainerDetail, StatsReading
from ._start_failure import not_running

KEEPALIVE = ["cat"]


class FakeSandbox:
    """One sandbox of a `FakeRuntime` (see the rules)."""

    def __init__(
        self,
        sandbox_id: str,
        container_id: str,
        spec: SandboxSpec,
        image_id: str,
        labels: dict[str, str],
        root: Path,
    ) -> None:
        self.sandbox_id = sandbox_id
        self.container_id = container_id
        self.spec = spec
        self.image_id = image_id
        self.labels = labels
        self.root = root
        self.created = time.time()
        self.started_at = 0.0
        self.finished_at = 0.0
        self.exit_code: int | None = None
        self.oom_killed = False
        self._main: FakeProcess | None = None
        self._stopping = False  # a stop is under way: its main process's end is no crash
        self._processes: list[FakeProcess] = []
        self.log = ContainerLog()
        self.paused = False  # its processes are stopped (`_fake_freezer`)

    @property
    def running(self) -> bool:
        """True while its main process runs (or was not yet seen to end: see `settle`)."""
        return self._main is not None

    @property
    def status(self) -> str:
        """The engine's word for its state."""
        if self.running:
            return "paused" if self.paused else "running"
        return "exited" if self.finished_at else "created"

    def info(self, default_uid: int) -> SandboxInfo:
        """The sandbox as the agent reports it."""
        return SandboxInfo(
            sandbox_id=self.sandbox_id,
            container_id=self.container_id,
            image=self.spec.image,
            state=self.status,
            owner=self.labels.get(LABEL_OWNER, ""),
            created_at=self.created,
            labels=dict(self.labels),
            exit_code=None if self.running or not self.finished_at else self.exit_code,
            spec=self.spec,
            owner_uid=owner_uid(self.labels, default_uid),
        )

    async def detail(self) -> ContainerDetail:
        """The sandbox as the engine's inspect record describes it."""
        pid = (await self._main.state()).pid if self._main is not None else 0
        return ContainerDetail(
            sandbox_id=self.sandbox_id,
            container_id=self.container_id,
            image=self.spec.image,
            image_id=self.image_id,
            status=self.status,
            running=self.running,
            pid=pid,
            started_at=self.started_at,
            finished_at=self.finished_at,
            exit_code=None if self.running else self.exit_code,
            oom_killed=self.oom_killed,
            ip_address="127.0.0.1" if self.spec.network else "",
            labels=dict(self.labels),
        )

    async def start(self) -> None:
        """Run its main process (it must not be running)."""
        out, err = self.log.open()  # its stdout and stderr are the sandbox's log
        try:
            self._main = await self._spawn(
                KEEPALIVE, env=None, cwd="", stdin=True, output=(out, err)
            )
        finally:
            os.close(out)
            os.close(err)
        self.started_at = time.time()
        self.oom_killed = False

    async def stop(self, timeout: float) -> None:
        """End every process of it (see the rules); it must be running. A paused one is
        thawed first, as the Docker runtime resumes one, so its processes take their SIGTERM."""
        main = self._main
        assert main is not None
        await self.set_paused(False)
        self._stopping = True
        try:
            with anyio.CancelScope(shield=True):
                _procs.signal_pids([(await main.state()).pid], signal.SIGTERM)
                with anyio.move_on_after(max(0.0, timeout)):
                    await main.wait_forever()
                main.kill()
                await main.wait_forever()
                await self._end(main.exit_code, oom=False)
        finally:
            self._stopping = False

    async def main_ended(self) -> None:
        """Wait until its main process ends on its own (forever if none runs, or a stop is
        under way: the stop then says it ended)."""
        if self._main is None or self._stopping:
            await anyio.sleep_forever()
        else:
            await self._main.wait_forever()

    async def settle(self) -> bool:
        """If its main process ended on its own, stop the sandbox (see the rules): True then,
        once (the runtime feeds the engine's "die")."""
        main = self._main
        if main is None or self._stopping or not main.ended:
            return False
        await self._end(main.exit_code, oom=False)
        return True

    async def crash(self, exit_code: int, oom: bool) -> None:
        """End the running sandbox as a crash (or, with `oom`, the kernel's OOM killer) would:
        every process SIGKILLed, `exit_code` its exit code."""
        assert self._main is not None
        await self._end(exit_code, oom=oom)

    async def set_paused(self, paused: bool) -> bool:
        """Freeze (or thaw) its processes; False if it already was so. `BadRequest` unless it
        runs."""
        if not self.running:
            need = "start it first" if paused else "nothing to resume"
            raise not_running(self.sandbox_id, self.status, need)
        if paused == self.paused:
            return False
        self.paused = paused
        work = _fake_freezer.freeze if paused else _fake_freezer.thaw
        await anyio.to_thread.run_sync(work, self.container_id)
        return True

    async def _end(self, exit_code: int | None, *, oom: bool) -> None:
        # The record first, at once: whoever looks meanwhile sees the sandbox stopped.
        self.exit_code, self.oom_killed, self.finished_at = exit_code, oom, time.time()
        self.paused = False  # SIGKILL ends stopped processes too
        await self.kill()

    async def kill(self) -> None:
        """SIGKILL every process of the sandbox and reap the ones started here."""
        started = [*self._processes, *([self._main] if self._main else [])]
        self._processes.clear()
        self._main = None  # not running from now on (before any wait: `settle` runs once)
        with anyio.CancelScope(shield=True):
            # Those started here by their handle (the mark may not show yet in a process
            # that is just starting), then every process with the mark (those they started).
            for process in started:
                process.kill()
            await anyio.to_thread.run_sync(_fake_procs.kill_marked, self.container_id)
            for process in started:
                await process.reap()
            self.log.close()

    async def delete(self) -> None:
        """Kill what runs and delete its folder."""
        await self.kill()
        await anyio.to_thread.run_sync(shutil.rmtree, self.root, True)

    async def exec(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str] | None,
        cwd: str,
        stdin: bool,
        terminal: tuple[int, int] | None = None,
    ) -> FakeProcess:
        """Start a process in the running sandbox; `SandboxFailed` if it is not running."""
        if not self.running:
            raise SandboxFailed(
                f"starting a process in sandbox {self.sandbox_id}: the sandbox is not running "
                "(its processes have all ended): start it again, or delete it"
            )
        if self.paused:  # as the engine refuses an exec into a frozen container
            raise BadRequest(f"sandbox {self.sandbox_id} is paused: resume it first")
        self._processes = [p for p in self._processes if not p.ended]
        process = await self._spawn(argv, env=env, cwd=cwd, stdin=stdin, terminal=terminal)
        self._processes.append(process)
        return process

    async def _spawn(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str] | None,
        cwd: str,
        stdin: bool,
        output: tuple[int, int] | None = None,
        terminal: tuple[int, int] | None = None,
    ) -> FakeProcess:
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(self.root),
            "HOSTNAME": self.sandbox_id[:63],
            **self.spec.env,
            **(env or {}),
        }
        if terminal is not None:
            return await _fake_term.start_terminal(
                self.root,
                self.sandbox_id,
                self.container_id,
                argv,
                env=full_env,
                cwd=cwd or self.spec.workdir,
                size=terminal,
            )
        return await _fake_procs.start(
            self.root,
            self.sandbox_id,
            self.container_id,
            argv,
            env=full_env,
            cwd=cwd or self.spec.workdir,
            stdin=stdin,
            output=output,
        )

    async def stats(self) -> StatsReading:
        """Its processes' cpu time, resident memory and count now (one reading)."""
        if not self.running:
            raise SandboxFailed(f"sandbox {self.sandbox_id} is not running: no resource use")
        pids = await anyio.to_thread.run_sync(_fake_procs.marked, self.container_id)
        cpu, memory = await anyio.to_thread.run_sync(_fake_procs.usage, pids)
        now = time.time()
        return StatsReading(
            read_at=now,
            preread_at=now,
            cpu_total=cpu,
            pre_cpu_total=cpu,
            online_cpus=max(1, int(self.spec.cpus)),
            memory_usage=memory,
            memory_limit=self.spec.memory,
            memory_peak=memory,
            pids=len(pids),
            pids_limit=self.spec.pids,
        )


async def make_root(root: Path, files: Path | None, workdir: str) -> None:
    """Make a new sandbox's folder (before its `FakeSandbox`): a copy of its image's `files`,
    if any, and its working folder."""
    await anyio.to_thread.run_sync(_make_root, root, files, workdir)


def _make_root(root: Path, files: Path | None, workdir: str) -> None:
    if files is not None:
        shutil.copytree(files, root, symlinks=True)
    root.mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    if workdir:
        _fake_files.host_path(root, workdir).mkdir(parents=True, exist_ok=True)


__all__ = ["KEEPALIVE", "FakeSandbox", "make_root"]
