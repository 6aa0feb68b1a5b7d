"""Container labels: how an agent recognises its own sandboxes and their owners."""

from __future__ import annotations

import hashlib

from rock_core._protocol import SandboxSpec, encode_value

LABEL_MANAGED = "rock.managed"
LABEL_HOST = "rock.host"
LABEL_SANDBOX = "rock.sandbox"
LABEL_OWNER = "rock.owner"
LABEL_CREATED = "rock.created"
LABEL_SPEC = "rock.spec"


def spec_digest(spec: SandboxSpec) -> str:
    """A short digest of a spec: a retried create with the same spec is the same sandbox."""
    return hashlib.sha256(encode_value(spec)).hexdigest()[:16]
