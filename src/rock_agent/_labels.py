"""Container labels: how an agent recognises its own sandboxes and their owners.

Rules:
- Labels are read from containers anyone may have made: a garbled label gives a default
  (and never an exception), so one odd container cannot stop a listing.
"""

from __future__ import annotations

import hashlib
import math

import msgspec

from rock_core._protocol import SandboxSpec

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

    The same as `rock_core._endpoint.Principal.key`.
    """
    return f"{uid}:{owner}"


def split_owner_key(key: str) -> tuple[int, str]:
    """(uid, owner) of an `owner_key`."""
    uid, _, owner = key.partition(":")
    return int(uid), owner


def owner_uid(labels: dict[str, str], default: int) -> int:
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


def created_at(labels: dict[str, str]) -> float:
    """When the sandbox was created (unix time) by its label; 0.0 if missing or garbled."""
    try:
        when = float(labels.get(LABEL_CREATED) or 0)
    except ValueError:
        return 0.0
    return when if math.isfinite(when) else 0.0
