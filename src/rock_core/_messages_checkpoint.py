"""Messages of checkpoints: a sandbox's file system frozen as an image on its host, listed,
removed, and copied between hosts as a byte stream.

Rules:
- Built on the base messages of `_messages`; a new request kind here is added to the unions
  in `_protocol` too. An agent that serves them announces the capability "checkpoint"; a client
  checks it before sending (`AgentConnection.require`).
- A checkpoint is an image tagged ``rock-checkpoint:<checkpoint_id>`` (`checkpoint_image`)
  and labelled as ours; a sandbox created with that image is a fork of it.
- A copy between hosts is two requests of the core: `ExportCheckpoint` on a host that holds it
  (the agent sends the image's archive as `StreamData` under the caller's credit, as a
  download does) and `ImportCheckpoint` on the host that lacks it (the caller streams those
  chunks under the agent's credit, as an upload does). Both are answered by `CheckpointReply`.
- A host "holds" a checkpoint when it made it or imported it; an agent sharing an engine with
  another host does not hold that host's checkpoints until it imports them.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from ._messages import Reply, Request
from ._schema import SandboxId

CAPABILITY = "checkpoint"
IMAGE_REPOSITORY = "rock-checkpoint"

#: A checkpoint's id: the tag of its image.
CheckpointId = Annotated[
    str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.-]*$", min_length=1, max_length=64)
]


def checkpoint_image(checkpoint_id: str) -> str:
    """The image reference of a checkpoint (what a fork's spec names)."""
    return f"{IMAGE_REPOSITORY}:{checkpoint_id}"


def checkpoint_of_image(image: str) -> str | None:
    """The checkpoint id an image reference names, or None for any other image."""
    repository, sep, tag = image.partition(":")
    return tag if sep and repository == IMAGE_REPOSITORY and tag else None


class CheckpointInfo(msgspec.Struct, kw_only=True):
    """One checkpoint as one host holds it."""

    checkpoint_id: str
    image: str  # the reference a fork names
    image_id: str = ""
    host_id: str = ""  # the host that answered
    source: str = ""  # the sandbox it was made from
    origin: str = ""  # the host it was made on
    owner: str = ""  # "uid:owner" key of its owner; reaped with that owner unless `kept`
    kept: bool = False
    size: int = 0  # bytes of the image's layers
    created: float = 0.0  # unix time
    containers: int = 0  # containers (any state) made from it on this host


class CheckpointSandbox(Request, tag="checkpoint"):
    """Freeze a running sandbox's file system as checkpoint `checkpoint_id` on its host.

    The sandbox pauses only while the engine commits. With `keep`, the checkpoint outlives its
    owner (it stays until removed)."""

    sandbox_id: SandboxId
    checkpoint_id: CheckpointId
    keep: bool = False


class ListCheckpoints(Request, tag="checkpoints_list"):
    """The checkpoints this host holds that the caller's user may see (one, if named)."""

    checkpoint_id: CheckpointId | None = None


class RemoveCheckpoint(Request, tag="checkpoint_remove"):
    """Remove a checkpoint's image from this host (untag it while containers still use it)."""

    checkpoint_id: CheckpointId


class ExportCheckpoint(Request, tag="checkpoint_export"):
    """Send the checkpoint's image archive as `StreamData` under the caller's credit."""

    checkpoint_id: CheckpointId


class ImportCheckpoint(Request, tag="checkpoint_import"):
    """Load a checkpoint's image archive the caller streams under the agent's credit."""

    checkpoint_id: CheckpointId


class CheckpointReply(Reply, tag="checkpoint_info"):
    """Answer carrying one checkpoint (to every checkpoint request but the listing)."""

    checkpoint: CheckpointInfo


class CheckpointListReply(Reply, tag="checkpoints"):
    """Answer to `ListCheckpoints`."""

    checkpoints: list[CheckpointInfo] = msgspec.field(default_factory=list)


__all__ = [
    "CAPABILITY",
    "IMAGE_REPOSITORY",
    "CheckpointId",
    "CheckpointInfo",
    "CheckpointListReply",
    "CheckpointReply",
    "CheckpointSandbox",
    "ExportCheckpoint",
    "ImportCheckpoint",
    "ListCheckpoints",
    "RemoveCheckpoint",
    "checkpoint_image",
    "checkpoint_of_image",
]
