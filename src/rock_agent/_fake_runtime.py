"""`FakeRuntime`: a `ContainerRuntime` with no container engine, for tests.

Rules:
- A sandbox is a record plus a folder on this host, its file system root (`_fake_files`);
  its processes are real local processes started in that folder (`_fake_sandbox`,
  `_fake_procs`), so shells, exit codes, stdin end-of-file and signals are real. They are not
  isolated: absolute paths they use are the host's, they run as the agent's user, and the
  spec's limits, user and network are recorded, not enforced.
- Creates, stops, starts and removals follow `DockerRuntime`'s rules and errors (idempotent
  create, `AlreadyExists` for another owner or spec, not-found for every method that names a
  sandbox), and each change is an `EngineEvent` on the feed, in order.
- A sandbox whose main process ends on its own stops, with that process's exit code and a
  "die" on the feed, as a container whose init exits; `crash` makes one end so (an OOM kill
  too: exit code 137, `OOMKilled` in its detail and a plain "die", as Docker reports it).
  The runtime notices such an end before it answers any call about sandboxes, and its event
  feed waits for the main processes too, so a reader of `events` hears of it at once.
- Images are `_fake_images`'s, builds `_fake_build`'s; stats are plain readings of the
  processes' /proc entries.
- Nothing runs in the background (the feed's reader does the watching): an instance needs
  no entering. `aclose` (or `async with`)
  kills what is left and deletes the folders.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from anyio.abc import ByteStream

from rock_core import BadRequest, NotFound, SandboxFailed, SandboxNotFound, TimedOut
from rock_core.protocol import SandboxInfo, SandboxSpec
from rock_core.serving import connection_refused

from . import _fake_files, _fake_images
from ._fake_archives import FakeImageArchives
from ._fake_events import FakeEventFeed
from ._fake_images import FakeImages
from ._fake_logs import read_log
from ._fake_netpol import FakePolicing, egress_refused
from ._fake_procs import FakeProcess
from ._fake_sandbox import FakeSandbox, make_root
from ._labels import adoption_problem, sandbox_labels, split_owner_key
from ._listeners import SocketPortListener, listen_here
from ._runtime import (
    ContainerDetail,
    ContainerRuntime,
    ContainerSummary,
    DiskUsage,
    EngineEvent,
    EventAction,
    ImageRecord,
    OutputChunk,
    PullPolicy,
    Resources,
    StatsReading,
)
from ._start_failure import not_running

DEFAULT_IMAGES = ("python:3.11", "busybox:latest")
CONNECT_TIMEOUT = 10.0


class FakeRuntime(FakeImageArchives, FakePolicing):
    """A `ContainerRuntime` whose sandboxes are folders and local processes (see the rules).

    `images` are present from the start, `pullable` can be pulled; `disk_limits` says whether
    a spec's `disk` is accepted. `folder` holds the sandboxes' roots (a new temporary folder by
    default). `sandbox_root(id)` tells a test where a sandbox's files are.
    """

    def __init__(
        self,
        *,
        host_id: str = "fake-host",
        images: Iterable[str] = DEFAULT_IMAGES,
        pullable: Iterable[str] = (),
        cpus: float = 4.0,
        memory: int = 16 << 30,
        disk_limits: bool = False,
        folder: Path | None = None,
    ) -> None:
        self.host_id = host_id
        self.uid = os.getuid()
        self.extra_labels: dict[str, str] = {}
        self.resources = Resources(cpus=cpus, memory=memory)
        self.disk_limits = disk_limits
        self._own_folder = folder is None
        self.folder = folder or Path(tempfile.mkdtemp(prefix="rock-fake-"))
        (self.folder / "images").mkdir(parents=True, exist_ok=True)
        self.images = FakeImages(images, pullable, self.folder / "images")
        self._containers: dict[str, FakeSandbox] = {}
        self._feed = FakeEventFeed(self.uid)

    async def __aenter__(self) -> FakeRuntime:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Kill every sandbox's processes and delete their folders (no events)."""
        with anyio.CancelScope(shield=True):
            for box in list(self._containers.values()):
                await box.kill()
            self._containers.clear()
            if self._own_folder:
                await anyio.to_thread.run_sync(shutil.rmtree, self.folder, True)

    def sandbox_root(self, sandbox_id: str) -> Path:
        """The folder holding a sandbox's files on this host. `SandboxNotFound`."""
        return self._box(sandbox_id).root

    # ------------------------------------------------------------------ engine facts

    async def engine_resources(self) -> Resources:
        """The cpus and memory given to the constructor."""
        return self.resources

    async def supports_disk_limits(self) -> bool:
        """`disk_limits` as given: a spec's `disk` is then recorded (never enforced)."""
        return self.disk_limits

    async def local_images(self) -> list[str]:
        """Tags of the images present, sorted."""
        return self.images.tags()

    async def data_root(self) -> str:
        """ "": images take no disk here, so a prune limit in percent is refused."""
        return ""  # images have no layers on disk here

    async def ensure_image(self, image: str, policy: PullPolicy) -> None:
        """Make `image` present per the pull policy (only `pullable` images can be pulled)."""
        self.images.ensure(image, policy)

    # ------------------------------------------------------------------ sandboxes

    def _box(self, sandbox_id: str) -> FakeSandbox:
        box = self._containers.get(sandbox_id)
        if box is None:
            raise SandboxNotFound(
                f"no sandbox {sandbox_id!r} on host {self.host_id}", sandbox_id=sandbox_id
            )
        return box

    async def _settle(self) -> None:
        """Stop every sandbox whose main process ended on its own, each with its "die"."""
        for box in list(self._containers.values()):
            if await box.settle():
                self._event(box, "die", box.exit_code)

    async def _settled(self, sandbox_id: str) -> FakeSandbox:
        """`_box`, once every sandbox's state is up to date (see `_settle`)."""
        await self._settle()
        return self._box(sandbox_id)

    async def crash(self, sandbox_id: str, exit_code: int = 137, oom: bool = False) -> None:
        """Make a running sandbox crash: every process of it is killed, it is `exited` with
        `exit_code`, and a "die" with that code is on the feed. With `oom`, the kernel killed
        it for lack of memory (`container(sandbox_id).oom_killed`, as the engine's
        `OOMKilled`). `SandboxNotFound`; `BadRequest` if it is not running."""
        box = await self._settled(sandbox_id)
        if not box.running:
            raise not_running(sandbox_id, box.status, "start it before crashing it")
        await box.crash(exit_code, oom)
        self._event(box, "die", exit_code)

    async def create(self, sandbox_id: str, spec: SandboxSpec, owner: str, uid: int) -> SandboxInfo:
        """Create and start a sandbox (see `ContainerRuntime.create`)."""
        if spec.disk and not self.disk_limits:
            raise BadRequest(
                f"sandbox {sandbox_id} asks for disk={spec.disk!r}: this fake runtime was made "
                "without disk limits (FakeRuntime(disk_limits=True) accepts them)"
            )
        await self._settle()
        existing = self._containers.get(sandbox_id)
        if existing is not None:
            problem = adoption_problem(
                self, existing.labels, sandbox_id, spec, owner=owner, uid=uid
            )
            if problem is not None:
                raise problem
            await self.start(sandbox_id)
            return await self.inspect(sandbox_id)
        self.images.ensure(spec.image, spec.pull)
        image = self.images.find(spec.image)
        labels = sandbox_labels(self, sandbox_id, spec, owner=owner, uid=uid, now=time.time())
        root = self.folder / "sandboxes" / secrets.token_hex(8)
        await make_root(root, image.files, spec.workdir)
        box = FakeSandbox(sandbox_id, secrets.token_hex(32), spec, image.image_id, labels, root)
        self._containers[sandbox_id] = box
        try:
            await box.start()
            self._event(box, "start")
            return await self.inspect(sandbox_id)
        except BaseException:  # failed, or its caller is gone: nothing is left behind
            with anyio.CancelScope(shield=True):
                await self.remove(sandbox_id)
            raise

    async def inspect(self, sandbox_id: str) -> SandboxInfo:
        """One sandbox. `SandboxNotFound`."""
        return (await self._settled(sandbox_id)).info(self.uid)

    async def container(self, sandbox_id: str) -> ContainerDetail:
        """One sandbox in detail; its `pid` is its main process's. `SandboxNotFound`."""
        return await (await self._settled(sandbox_id)).detail()

    async def list_sandboxes(self, owner: str = "") -> list[SandboxInfo]:
        """Every sandbox, or those of one owner key."""
        await self._settle()
        infos = [box.info(self.uid) for box in self._containers.values()]
        if not owner:
            return infos
        uid, name = split_owner_key(owner)
        return [i for i in infos if i.owner == name and i.owner_uid == uid]

    async def all_containers(self) -> list[ContainerSummary]:
        """Every sandbox, as image use sees it."""
        await self._settle()
        return [
            ContainerSummary(image_id=box.image_id, running=box.running, created=box.created)
            for box in self._containers.values()
        ]

    async def start(self, sandbox_id: str) -> None:
        """Start a stopped sandbox (its main process runs again). `SandboxNotFound`."""
        box = await self._settled(sandbox_id)
        if not box.running:
            await box.start()
            self._event(box, "start")

    async def stop(self, sandbox_id: str, timeout: float) -> None:
        """SIGTERM the main process, then after `timeout` s SIGKILL every process of the
        sandbox. `SandboxNotFound`."""
        box = await self._settled(sandbox_id)
        if box.running:
            await box.stop(timeout)
            self._event(box, "die", box.exit_code)

    async def pause(self, sandbox_id: str) -> None:
        """SIGSTOP its processes (`_fake_freezer`); `BadRequest` unless it runs."""
        if await (box := await self._settled(sandbox_id)).set_paused(True):
            self._event(box, "pause")

    async def resume(self, sandbox_id: str) -> None:
        """SIGCONT its processes; `BadRequest` unless it runs."""
        if await (box := await self._settled(sandbox_id)).set_paused(False):
            self._event(box, "unpause")

    async def remove(self, sandbox_id: str) -> None:
        """Kill its processes and delete its folder; one already gone is not an error."""
        await self._settle()
        box = self._containers.get(sandbox_id)
        if box is None:
            return
        if box.running:
            await self.stop(sandbox_id, 0)
        del self._containers[sandbox_id]
        await box.delete()
        self._event(box, "destroy")

    # ------------------------------------------------------------------ processes

    async def exec(
        self,
        sandbox_id: str,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str = "",
        stdin: bool = True,
        terminal: tuple[int, int] | None = None,
    ) -> FakeProcess:
        """Start `argv` in a running sandbox (see `ContainerRuntime.exec`; `_fake_term`)."""
        box = await self._settled(sandbox_id)
        return await box.exec(argv, env=env, cwd=cwd, stdin=stdin, terminal=terminal)

    async def connect(self, sandbox_id: str, address: str, port: int) -> ByteStream:
        """A TCP connection to `address:port` of this host (the fake has no network of its
        own: the sandbox's ports are the host's)."""
        box = await self._settled(sandbox_id)
        where = f"port {port} in sandbox {sandbox_id}"
        if not box.running:
            raise not_running(sandbox_id, box.status, "start it before forwarding a port")
        if (refused := egress_refused(box.spec, sandbox_id, address, port)) is not None:
            raise refused
        try:
            with anyio.fail_after(CONNECT_TIMEOUT):
                return await anyio.connect_tcp(address, port)
        except TimeoutError as exc:
            raise TimedOut(f"connecting to {where} took over {CONNECT_TIMEOUT:g} s") from exc
        except OSError as exc:
            if connection_refused(exc):
                raise NotFound(f"nothing listens on {where} (connection refused)") from exc
            raise SandboxFailed(f"cannot connect to {where}: {exc.strerror or exc}") from exc

    async def listen(self, sandbox_id: str, address: str, port: int) -> SocketPortListener:
        """A listener on `address:port` of this host (the sandbox's network is the host's)."""
        box = await self._settled(sandbox_id)
        if not box.running:
            raise not_running(sandbox_id, box.status, "start it before exposing a host port")
        return await listen_here(sandbox_id, address, port)

    # ------------------------------------------------------------------ files

    async def get_archive(self, sandbox_id: str, path: str) -> AsyncGenerator[bytes, None]:
        """`path` of the sandbox as a tar stream. `SandboxNotFound`, `FileNotFound`."""
        root = self._box(sandbox_id).root
        archive = _fake_files.read_archive(root, sandbox_id, path)
        async with contextlib.aclosing(archive) as chunks:
            async for chunk in chunks:
                yield chunk

    async def put_archive(self, sandbox_id: str, path: str, chunks: AsyncIterator[bytes]) -> None:
        """Unpack a tar stream into folder `path`. `SandboxNotFound`, `FileNotFound`,
        `BadRequest`."""
        await _fake_files.write_archive(self._box(sandbox_id).root, sandbox_id, path, chunks)

    # ------------------------------------------------------------------ images

    def _users(self) -> list[str]:
        """The image id of every sandbox (an image once per sandbox that uses it)."""
        return [box.image_id for box in self._containers.values()]

    async def disk_usage(self) -> DiskUsage:
        """Every image with the size it was given."""
        users = self._users()
        records = [image.record(users.count(image.image_id)) for image in self.images.all()]
        return DiskUsage(images=records, layers_size=sum(r.size for r in records))

    async def inspect_image(self, reference: str) -> ImageRecord:
        """One image by tag or id. `ImageNotFound`."""
        image = self.images.find(reference)
        return image.record(self._users().count(image.image_id))

    async def remove_image(self, reference: str) -> None:
        """Remove one tag (the image goes with its last). `ImageNotFound`, `SandboxFailed`."""
        self.images.remove(reference, set(self._users()))

    async def commit(
        self,
        sandbox_id: str,
        *,
        repository: str,
        tag: str,
        message: str,
        changes: list[str],
        labels: Mapping[str, str],
        pause: bool,
    ) -> str:
        """Save a copy of the sandbox's files as image `repository:tag`; its id."""
        box = self._box(sandbox_id)
        _fake_images.check_changes(changes)
        merged = _fake_images.commit_labels(self.images, box.image_id, box.labels, labels)
        image = await anyio.to_thread.run_sync(
            self.images.commit, f"{repository}:{tag}", box.root, merged
        )
        return image.image_id

    # ------------------------------------------------------------------ observing

    async def stats(self, sandbox_id: str) -> StatsReading:
        """The processes' cpu time, resident memory and count now (no second reading)."""
        return await (await self._settled(sandbox_id)).stats()

    def _event(self, box: FakeSandbox, action: EventAction, exit_code: int | None = None) -> None:
        self._feed.add(
            action,
            sandbox_id=box.sandbox_id,
            container_id=box.container_id,
            labels=box.labels,
            exit_code=exit_code,
        )

    async def events(self, since: float) -> AsyncIterator[EngineEvent]:
        """Every event at or after `since`, then new ones as they happen (never ends); a
        sandbox whose main process ends is stopped, with its "die", as soon as it ends."""
        async for event in self._feed.read(since, self._settle, self._main_processes):
            yield event

    def logs(
        self, sandbox_id: str, *, follow: bool, tail: int | None, since: float, timestamps: bool
    ) -> AsyncGenerator[OutputChunk, None]:
        """What the sandbox's main process wrote (`_fake_logs`)."""
        return read_log(
            self._settled, sandbox_id, follow=follow, tail=tail, since=since, timestamps=timestamps
        )

    def _main_processes(self) -> list[Callable[[], Awaitable[None]]]:
        """A wait for the end of each sandbox's main process (what the feed watches)."""
        return [box.main_ended for box in self._containers.values()]


if TYPE_CHECKING:
    _CONFORMS: ContainerRuntime = FakeRuntime()  # mypy checks that the fake fits the seam

__all__ = ["DEFAULT_IMAGES", "FakeRuntime"]
