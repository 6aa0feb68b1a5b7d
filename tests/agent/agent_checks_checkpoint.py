"""The agent conformance check of checkpoints (registered in `agent_checks.CHECKS` on import):
made, listed, copied (exported and imported again, as a core relays it), removed, and refused
with the same words by every agent."""

from __future__ import annotations

import pytest

from rock_core import AlreadyExists, BadRequest, ImageNotFound
from rock_core._checkpoint_copy import copy
from rock_core._protocol import CreateSandbox, Done, RemoveSandbox, SandboxReply, StopSandbox
from rock_core.protocol import (
    CheckpointListReply,
    CheckpointReply,
    CheckpointSandbox,
    ExportCheckpoint,
    ImportCheckpoint,
    ListCheckpoints,
    RemoveCheckpoint,
)

from .agent_checks import Subject, check, create


@check(
    CreateSandbox,
    CheckpointSandbox,
    ListCheckpoints,
    ExportCheckpoint,
    ImportCheckpoint,
    RemoveCheckpoint,
    StopSandbox,
    RemoveSandbox,
)
async def checkpoints_are_made_listed_copied_and_removed(subject: Subject) -> None:
    async with subject.connect("checkpoint-owner") as conn:
        await create(conn, subject, "ck-src")
        made = await conn.call(
            CheckpointSandbox(sandbox_id="ck-src", checkpoint_id="conf-ck"), CheckpointReply
        )
        info = made.checkpoint
        assert (info.checkpoint_id, info.source, info.origin, info.host_id) == (
            "conf-ck",
            "ck-src",
            subject.host_id,
            subject.host_id,
        )
        assert info.image == "rock-checkpoint:conf-ck" and not info.kept
        with pytest.raises(AlreadyExists) as taken:
            await conn.call(
                CheckpointSandbox(sandbox_id="ck-src", checkpoint_id="conf-ck"), CheckpointReply
            )
        assert str(taken.value) == "checkpoint 'conf-ck' already exists: choose another name"
        listing = await conn.call(ListCheckpoints(checkpoint_id="conf-ck"), CheckpointListReply)
        assert [c.checkpoint_id for c in listing.checkpoints] == ["conf-ck"]
        await copy(conn, conn, "conf-ck")  # out and back in: the same checkpoint, once
        listing = await conn.call(ListCheckpoints(), CheckpointListReply)
        assert [c.checkpoint_id for c in listing.checkpoints] == ["conf-ck"]
        await conn.call(RemoveCheckpoint(checkpoint_id="conf-ck"), CheckpointReply)
        with pytest.raises(ImageNotFound) as missing:
            await conn.call(RemoveCheckpoint(checkpoint_id="conf-ck"), CheckpointReply)
        assert str(missing.value) == f"no checkpoint 'conf-ck' on host {subject.host_id}"
        await conn.call(StopSandbox(sandbox_id="ck-src", timeout=1), SandboxReply)
        with pytest.raises(BadRequest) as stopped:
            await conn.call(
                CheckpointSandbox(sandbox_id="ck-src", checkpoint_id="conf-ck2"), CheckpointReply
            )
        assert str(stopped.value) == (
            "sandbox ck-src is not running (exited): only a running sandbox can be"
            " checkpointed; start it first"
        )
        await conn.call(RemoveSandbox(sandbox_id="ck-src"), Done)


__all__ = ["checkpoints_are_made_listed_copied_and_removed"]
