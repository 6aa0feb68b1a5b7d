"""Container labels: how an agent recognises its own sandboxes and their owners.

Rules:
- Labels are read from containers anyone may have made: a garbled label gives a default
  (and never an exception), so one odd container cannot stop a listing.
- What a runtime writes on a new sandbox (`sandbox_labels`) and whether an existing one may
  answer a create (`adoption_problem`) are decided here once, for every runtime: plain
  functions, with the time passed in.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Protocol

import msgspec

from rock_core import AlreadyExists
from rock_core.protocol import SandboxSpec

LABEL_MANAGED = "rock.managed"
LABEL_HOST = "rock.host"
LABEL_SANDBOX = "rock.sandbox"
LABEL_OWNER = "rock.owner"
# The user (uid) whose connection created it: owners are scoped by user (see `owner_key`).
LABEL_OWNER_UID = "rock.owner-uid"
LABEL_CREATED = "rock.created"
LABEL_SPEC = "rock.spec"
LABEL_SPEC_JSON = "rock.spec.json"
# Set by agents that keep sandboxes for a lease after their owner disconnects (socket mode).
# Only such sandboxes are reaped when a lease ends; those of a local program's private agent
# live exactly as long as that program.
LABEL_LEASED = "rock.leased"


def owner_key(uid: int, owner: str) -> str:
    """An owner as the agent keys it (leases, connections, deadlines): scoped by its user.

    The same as `rock_core.serving.Principal.key`.
    """
    return f"{uid}:{owner}"


def split_owner_key(key: str) -> tuple[int, str]:
    """(uid, owner) of an `owner_key`."""
    uid, _, owner = key.partition(":")
    return int(uid), owner


def owner_uid(labels: Mapping[str, str], default: int) -> int:
    """The uid a container's labels name as its owner's (`default` for older containers)."""
    try:
        return int(labels.get(LABEL_OWNER_UID, default))
    except ValueError:
        return -1  # garbled: no connection but root's administrator may touch it


# Spec fields added after digests were first written: left out of a digest while they hold
# their default, so a spec that does not use them digests as it always did.
_LATER_FIELDS = {
    "idle_timeout": None,
    "lifetime": None,
    "on_expire": "stop",
    "auto_delete_after": None,
}


def spec_digest(spec: SandboxSpec) -> str:
    """A short digest of a spec: a retried create with the same spec is the same sandbox."""
    fields = msgspec.structs.asdict(spec)
    for name, default in _LATER_FIELDS.items():
        if fields[name] == default:
            del fields[name]
    return hashlib.sha256(msgspec.msgpack.encode(fields, order="sorted")).hexdigest()[:16]


def spec_label(spec: SandboxSpec) -> str:
    """The whole spec as a label, so the core can adopt a sandbox and account its resources."""
    return msgspec.json.encode(spec).decode()


def spec_from_labels(labels: dict[str, str]) -> SandboxSpec | None:
    """The spec a container was created with, if its labels carry it intact."""
    raw = labels.get(LABEL_SPEC_JSON)
    if not raw:
        return None
    try:
        return msgspec.json.decode(raw, type=SandboxSpec)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


class LabelSource(Protocol):
    """What a runtime tells `sandbox_labels` and `adoption_problem` about itself."""

    host_id: str
    uid: int  # the owner uid of containers from agents that did not label it
    extra_labels: dict[str, str]  # added to every container the runtime makes


def sandbox_labels(
    runtime: LabelSource, sandbox_id: str, spec: SandboxSpec, *, owner: str, uid: int, now: float
) -> dict[str, str]:
    """Every label of a new sandbox's container: the spec's own, ours, then the runtime's
    extra ones."""
    return {
        **spec.labels,
        LABEL_MANAGED: "1",
        LABEL_HOST: runtime.host_id,
        LABEL_SANDBOX: sandbox_id,
        LABEL_OWNER: owner,
        LABEL_OWNER_UID: str(uid),
        LABEL_CREATED: f"{now:.3f}",
        LABEL_SPEC: spec_digest(spec),
        LABEL_SPEC_JSON: spec_label(spec),
        **runtime.extra_labels,
    }


def adoption_problem(
    runtime: LabelSource,
    labels: Mapping[str, str],
    sandbox_id: str,
    spec: SandboxSpec,
    *,
    owner: str,
    uid: int,
) -> AlreadyExists | None:
    """Why an existing sandbox (its `labels`) cannot answer this create; None if it can.

    A create is idempotent only for the same owner (and uid) with the same spec.
    """
    if (labels.get(LABEL_OWNER), owner_uid(labels, runtime.uid)) != (owner, uid):
        return AlreadyExists(
            f"sandbox id {sandbox_id!r} is taken on host {runtime.host_id} by another owner: "
            "choose another id",
            sandbox_id=sandbox_id,
        )
    if labels.get(LABEL_SPEC) != spec_digest(spec):
        return AlreadyExists(
            f"sandbox {sandbox_id} already exists with a different spec", sandbox_id=sandbox_id
        )
    return None


def created_at(labels: dict[str, str]) -> float:
    """When the sandbox was created (unix time) by its label; 0.0 if missing or garbled."""
    try:
        when = float(labels.get(LABEL_CREATED) or 0)
    except ValueError:
        return 0.0
    return when if math.isfinite(when) else 0.0
