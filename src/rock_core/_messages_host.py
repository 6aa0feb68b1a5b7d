"""Messages of using what runs inside a sandbox and of its life: images, commit, stats, ports
and timeouts.

Rules:
- Built on the base messages of `_messages` (same tag field, same request ids); the values they
  carry are in `_values`. A new request kind here is added to the unions in `_protocol` too.
- Mutable defaults are `msgspec.field(default_factory=...)` (the same on the wire as `[]`).
- An agent announces each family it serves as a capability ("images", "commit", "stats",
  "ports", "host-ports", "timeouts", "build"); a client checks it before sending
  (`AgentConnection.require`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ._messages import Message, Reply, Request
from ._schema import (
    TEXT_PATTERN,
    Bytes,
    Image,
    Percent,
    Port,
    RequestId,
    SandboxId,
    SecondsOrInf,
    ShortText,
)
from ._values import ImageInfo, ImageReport, PruneResult, SandboxDeadlines, SandboxStats

#: An IP address as seen from inside a sandbox.
Address = Annotated[str, msgspec.Meta(pattern=TEXT_PATTERN, min_length=1, max_length=255)]
#: A TCP port, or 0 for any free one.
PortOrAny = Annotated[int, msgspec.Meta(ge=0, le=65535)]

# ---------------------------------------------------------------------------- images, commit,
# stats and ports (requests, values and replies of "using what runs inside")


class ListImages(Request, tag="images_list"):
    """Report the images of this host."""


class WarmImage(Request, tag="image_warm"):
    """Make `image` present on this host (pull it unless it is there already)."""

    image: Image


class PruneImages(Request, tag="images_prune"):
    """Remove least recently used images while all images take more than the limit.

    Exactly one of `max_bytes` and `max_percent` (of the capacity of the file system holding the
    engine's data) sets the limit. Images a container (any state) uses are never removed; with
    `only`, just images with a tag matching one of these shell patterns are candidates.
    """

    max_bytes: Bytes | None = None
    max_percent: Percent | None = None
    only: Annotated[list[ShortText], msgspec.Meta(max_length=256)] = msgspec.field(
        default_factory=list
    )
    dry_run: bool = False


class CommitSandbox(Request, tag="commit"):
    """Save a sandbox's file system as the image `image` (``name:tag``)."""

    sandbox_id: SandboxId
    image: Image
    message: Annotated[str, msgspec.Meta(pattern=TEXT_PATTERN, max_length=65536)] = ""
    # Dockerfile instructions applied to the image's config
    changes: Annotated[list[ShortText], msgspec.Meta(max_length=256)] = msgspec.field(
        default_factory=list
    )
    pause: bool = True


class BuildImage(Request, tag="image_build"):
    """Build the image `tag` (``name[:tag]``) from a build context the client streams.

    The context is a tar stream of `StreamData` under the agent's `StreamCredit` (as `Upload`'s
    is); `dockerfile` is the Dockerfile's path inside it.
    """

    tag: Image
    dockerfile: Annotated[
        str, msgspec.Meta(pattern=TEXT_PATTERN, min_length=1, max_length=4096)
    ] = "Dockerfile"


class ReadStats(Request, tag="stats"):
    """Report a sandbox's live resource use."""

    sandbox_id: SandboxId


class ForwardPort(Request, tag="forward"):
    """Carry one TCP connection to `port` inside a sandbox as a two-way stream.

    The agent connects inside the sandbox's network namespace, then grants `StreamCredit`; both
    sides send `StreamData` under the other's credit, and an ``end`` chunk half-closes that
    direction. The reply comes when both directions have ended.
    """

    sandbox_id: SandboxId
    port: Port
    # Where to connect, seen from inside the sandbox.
    address: Address = "127.0.0.1"


class ListenPort(Request, tag="listen"):
    """Listen on `address`:`port` inside a sandbox (0: any free port) for the caller.

    The agent binds in the sandbox's network namespace and sends `Listening` with the port,
    then one `Accepted` per connection made there. The caller carries each one with a
    `ClaimConnection`; leaving (cancelling) this request closes the listener and the
    connections not yet claimed. It ends with an error only (the sandbox stopped or went).
    """

    sandbox_id: SandboxId
    port: PortOrAny = 0
    address: Address = "127.0.0.1"


class ClaimConnection(Request, tag="claim"):
    """Carry connection `connection` accepted by the `ListenPort` request `listen` (an id on
    this link) as a two-way stream, exactly as `ForwardPort` carries one; with `reject`, reset
    it instead (the caller could not reach its own end). Answered with `ForwardReply`."""

    sandbox_id: SandboxId
    listen: RequestId
    connection: RequestId
    reject: bool = False


class Listening(Message, tag="listening"):
    """Event of a `ListenPort`: the listener is bound on `port` inside the sandbox."""

    id: RequestId
    port: Port


class Accepted(Message, tag="accepted"):
    """Event of a `ListenPort`: connection number `connection` waits for its claim."""

    id: RequestId
    connection: RequestId


class ImageListReply(Reply, tag="images"):
    """Answer to `ListImages`."""

    report: ImageReport


class ImageReply(Reply, tag="image"):
    """Answer carrying one image (to `WarmImage` and `CommitSandbox`)."""

    image: ImageInfo


class BuildReply(Reply, tag="built"):
    """Answer to `BuildImage`: the image built, and the last lines of the build's output."""

    image: ImageInfo
    output: list[str] = msgspec.field(default_factory=list)


class PruneReply(Reply, tag="pruned"):
    """Answer to `PruneImages`."""

    result: PruneResult


class StatsReply(Reply, tag="stats_result"):
    """Answer to `ReadStats`."""

    stats: SandboxStats


class ForwardReply(Reply, tag="forwarded"):
    """Answer to `ForwardPort` once both directions of the connection have ended."""

    bytes_in: int  # bytes carried from the caller into the sandbox
    bytes_out: int  # bytes carried from the sandbox to the caller


# ---------------------------------------------------------------------------- timeouts and
# lifecycle events (idle timeout, hard lifetime, expiry policy, auto-delete; docs/lifecycle.md)
class SetTimeouts(Request, tag="timeouts"):
    """Change a sandbox's timeouts while it exists: None leaves a value, `NO_LIMIT` removes it."""

    sandbox_id: SandboxId
    idle_timeout: SecondsOrInf | None = None
    lifetime: SecondsOrInf | None = None
    on_expire: Literal["", "stop", "delete"] = ""  # "stop" | "delete"; empty leaves it
    auto_delete_after: SecondsOrInf | None = None


class Keepalive(Request, tag="keepalive"):
    """A use of the sandbox with nothing to do: its idle timeout runs again from now."""

    sandbox_id: SandboxId


class DeadlinesReply(Reply, tag="deadlines"):
    """Answer to `SetTimeouts` and `Keepalive`: the sandbox's deadlines now."""

    deadlines: SandboxDeadlines
