"""The agent's runtime seam: what the agent needs from a container engine, as a Protocol.

Rules:
- Everything that crosses the seam is a typed value of `_runtime_values` (re-exported here)
  or `SandboxInfo` / `SandboxSpec` of the protocol: no engine objects, no engine JSON, no `Any`.
- Every failure is one of our tree (`rock_core`); each method names the ones it
  raises. An implementation translates its engine's errors at its own boundary.
- Sandboxes are named by sandbox id; an implementation manages only its own host's
  (`host_id`) and never touches another's.
- Times are unix seconds (floats); 0.0 means the engine does not know.
- `DockerRuntime` (`_docker`) is the real implementation; `rock_agent.testing.FakeRuntime`
  the fake; one conformance suite runs against both.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Protocol

from anyio.abc import ByteStream

from rock_core.protocol import SandboxInfo, SandboxSpec

from ._runtime_values import (
    BuildOutcome,
    ContainerDetail,
    ContainerSummary,
    DiskUsage,
    EngineEvent,
    EventAction,
    ImageRecord,
    OutputChunk,
    OutputStream,
    ProcessState,
    PullPolicy,
    Resources,
    StatsReading,
)


class PortListener(Protocol):
    """A TCP listener inside a sandbox's network namespace (`ContainerRuntime.listen`)."""

    @property
    def port(self) -> int:
        """The port it is bound to."""
        ...

    async def accept(self) -> ByteStream:
        """The next connection made to it (from inside the sandbox)."""
        ...

    async def aclose(self) -> None:
        """Stop listening (connections already accepted stay open)."""
        ...


class Process(Protocol):
    """A process started in a sandbox, attached: its input, its output and how it ended.

    A process the runtime could not start (no such working folder, program or user) raises
    the error naming that cause (`FileNotFound`, `BadRequest`; `SandboxFailed` if the sandbox
    stopped meanwhile) from `read` at the end of its output or from `write`.
    """

    @property
    def sandbox_id(self) -> str:
        """The sandbox it runs in."""
        ...

    async def write(self, data: bytes) -> None:
        """Write to its stdin. `TransportError` if it ended before taking it."""
        ...

    async def read(self) -> OutputChunk | None:
        """The next piece of output; None at the end of both streams. `TransportError` if the
        stream breaks, `TimedOut` if the engine stops answering."""
        ...

    async def close_input(self) -> None:
        """Close its stdin (it reads end-of-file); never raises."""
        ...

    async def state(self) -> ProcessState:
        """Its state now. `SandboxFailed`, `TimedOut`, `EngineUnavailable`."""
        ...

    async def wait(self) -> int | None:
        """Its exit code once its output has ended; None if it still runs a moment later.
        `TimedOut`, `EngineUnavailable`."""
        ...

    async def resize(self, rows: int, cols: int) -> None:
        """Set the size of its terminal (it gets SIGWINCH). `BadRequest` if it has none."""
        ...

    async def aclose(self) -> None:
        """Detach from it (it may go on; later output is dropped); never raises."""
        ...


class ContainerRuntime(Protocol):
    """One container engine as one agent (one host id) uses it.

    Any method may also raise `EngineUnavailable` (no engine answers), `TimedOut` (it stopped
    answering), `TransportError` (it broke off a request) or `ProtocolError` (it answered
    something unreadable).
    """

    host_id: str  # the host whose sandboxes this runtime manages
    uid: int  # the owner's uid of sandboxes whose labels name none
    extra_labels: dict[str, str]  # labels added to every sandbox it makes from now on

    # ------------------------------------------------------------------ engine facts

    async def engine_resources(self) -> Resources:
        """The engine host's cpus and memory (read once)."""
        ...

    async def supports_disk_limits(self) -> bool:
        """True if a sandbox's `disk` limit can be enforced here."""
        ...

    async def local_images(self) -> list[str]:
        """Tags of the images present on the engine, sorted."""
        ...

    async def data_root(self) -> str:
        """The engine's data folder on this machine, where image layers live; "" if none."""
        ...

    async def restore_network(self) -> list[str]:
        """Apply again the network policies of running sandboxes that this process holds no
        DNS filter for (an agent that started; docs/network.md); the ids restored."""
        ...

    async def ensure_image(self, image: str, policy: PullPolicy) -> None:
        """Make `image` present according to the pull `policy` (a `PullPolicy`).

        `BadRequest` for an unknown policy; `ImageNotFound` if it is missing and cannot (or
        may not) be pulled.
        """
        ...

    # ------------------------------------------------------------------ sandboxes

    async def create(self, sandbox_id: str, spec: SandboxSpec, owner: str, uid: int) -> SandboxInfo:
        """Create and start a sandbox; the same call again (same owner, same spec) answers
        with the existing one, started if it was stopped.

        `AlreadyExists` if the id is taken by another owner or with another spec;
        `BadRequest` for a spec this engine cannot honour (made nothing); `ImageNotFound`;
        `SandboxFailed` (or `FileNotFound`/`BadRequest` naming the cause) if it did not start.
        """
        ...

    async def inspect(self, sandbox_id: str) -> SandboxInfo:
        """One sandbox of this host. `SandboxNotFound`."""
        ...

    async def container(self, sandbox_id: str) -> ContainerDetail:
        """One sandbox's container in detail. `SandboxNotFound`."""
        ...

    async def list_sandboxes(self, owner: str = "") -> list[SandboxInfo]:
        """Every sandbox of this host, or of one owner key (`_labels.owner_key`)."""
        ...

    async def all_containers(self) -> list[ContainerSummary]:
        """Every container of the engine, any host, owner and state."""
        ...

    async def start(self, sandbox_id: str) -> None:
        """Start a stopped sandbox (a running one stays). `SandboxNotFound`, `SandboxFailed`."""
        ...

    async def stop(self, sandbox_id: str, timeout: float) -> None:
        """Stop a sandbox, its files kept: SIGTERM, then SIGKILL after `timeout` s; a stopped
        one stays stopped. `SandboxNotFound`."""
        ...

    async def remove(self, sandbox_id: str) -> None:
        """Remove a sandbox and its files; one already gone is not an error."""
        ...

    async def pause(self, sandbox_id: str) -> None:
        """Freeze a running sandbox (state "paused"); a paused one stays. `BadRequest`."""
        ...

    async def resume(self, sandbox_id: str) -> None:
        """Thaw a paused sandbox; a running one stays. `BadRequest` if it does not run."""
        ...

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
    ) -> Process:
        """Start `argv` in a running sandbox, attached (stdin open if `stdin`; with a `terminal`
        of (rows, cols), on a new pseudo-terminal that is all three, its output all "stdout").

        `SandboxNotFound`; `SandboxFailed` if the sandbox is not running. A process that
        could not start raises from the returned handle (see `Process`).
        """
        ...

    async def connect(self, sandbox_id: str, address: str, port: int) -> ByteStream:
        """A TCP connection to `address:port` inside the sandbox's network namespace.

        `SandboxNotFound`; `BadRequest` if the sandbox is not running (or the agent may not
        enter it); `NotFound` if nothing listens there; `TimedOut` if the connect takes too
        long; `SandboxFailed` for any other failure to connect.
        """
        ...

    async def listen(self, sandbox_id: str, address: str, port: int) -> PortListener:
        """A TCP listener on `address:port` (0: any free port) inside the sandbox's network
        namespace: the sandbox's own programs connect to it.

        `SandboxNotFound`; `BadRequest` if the sandbox is not running (or the agent may not
        enter it, or `address` is not one of its own); `AlreadyExists` if the port is taken;
        `SandboxFailed` for any other failure to listen.
        """
        ...

    # ------------------------------------------------------------------ files

    def get_archive(self, sandbox_id: str, path: str) -> AsyncGenerator[bytes, None]:
        """`path` of the sandbox as a tar stream. `SandboxNotFound`, `FileNotFound`."""
        ...

    async def put_archive(self, sandbox_id: str, path: str, chunks: AsyncIterator[bytes]) -> None:
        """Unpack a tar stream into folder `path` of the sandbox. `SandboxNotFound`,
        `FileNotFound` (no such folder), `BadRequest` (not a folder, or a bad archive)."""
        ...

    # ------------------------------------------------------------------ images

    async def disk_usage(self) -> DiskUsage:
        """Every top-level image with its sizes, and the layers' total."""
        ...

    async def inspect_image(self, reference: str) -> ImageRecord:
        """One image by reference or id. `ImageNotFound`."""
        ...

    async def remove_image(self, reference: str) -> None:
        """Remove one tag (the image goes with its last), never forced. `ImageNotFound`;
        `SandboxFailed` if a container uses it."""
        ...

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
        """Save the sandbox's files as image `repository:tag` and return its id.

        The image starts as the sandbox's own image did (its entrypoint, command, env,
        working folder and user), with the sandbox's `rock.*` labels blanked and `labels`
        added. `SandboxNotFound`; `BadRequest` for bad `changes`; `SandboxFailed`.
        """
        ...

    def export_image(self, reference: str) -> AsyncGenerator[bytes, None]:
        """The image `reference` alone as the engine's archive (``docker save``), in chunks.
        `ImageNotFound`."""
        ...

    async def load_image(self, archive: AsyncIterator[bytes], *, only: str) -> None:
        """Load an archive `export_image` made of image `only` (its tags and labels come with
        it). `BadRequest` for a bad archive, or one that would tag anything but `only`: checked
        before the engine sees it, so a caller cannot retag another user's images."""
        ...

    async def build_image(
        self,
        context: AsyncIterator[bytes],
        *,
        tag: str,
        dockerfile: str,
        labels: Mapping[str, str],
    ) -> BuildOutcome:
        """Build image `tag` from `context` (a tar stream of the build context, its Dockerfile at
        `dockerfile`), with `labels` added; the base image is pulled only if it is missing.

        `BadRequest` for a Dockerfile that is missing, unreadable or fails at a step (the
        message names the step and ends with the build's last output lines, which are also its
        ``output`` detail); `ImageNotFound` if a base image is missing and cannot be pulled.
        No container of the build is left behind, failed or not.
        """
        ...

    # ------------------------------------------------------------------ observing

    async def stats(self, sandbox_id: str) -> StatsReading:
        """One resource-use reading (it may take a second). `SandboxNotFound`,
        `SandboxFailed`."""
        ...

    def events(self, since: float) -> AsyncIterator[EngineEvent]:
        """Starts, stops and removals of this host's sandboxes from `since` (unix time) on:
        those since then first, in order, then new ones as they happen. `TransportError`
        when the feed breaks (read it again from the last event's time)."""
        ...

    def logs(
        self, sandbox_id: str, *, follow: bool, tail: int | None, since: float, timestamps: bool
    ) -> AsyncGenerator[OutputChunk, None]:
        """What the sandbox's main process wrote, in order (`ReadLogs` says what the arguments
        mean); with `follow`, until it stops. `SandboxNotFound`."""
        ...


__all__ = [
    "BuildOutcome",
    "ContainerDetail",
    "ContainerRuntime",
    "ContainerSummary",
    "DiskUsage",
    "EngineEvent",
    "EventAction",
    "ImageRecord",
    "OutputChunk",
    "OutputStream",
    "PortListener",
    "Process",
    "ProcessState",
    "PullPolicy",
    "Resources",
    "StatsReading",
]
