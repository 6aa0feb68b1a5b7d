"""The pull-policy decision every runtime makes before a create: use the local copy, or pull.

Rules:
- Plain code: it is told whether the image is present and says whether to pull; the runtime
  does the pulling (or its fake's lookup) and asks `unpulled` how a failed pull ends.
- The errors are the same for every runtime: an unknown policy is `BadRequest`, a missing image
  under "never" or one that could not be pulled is `ImageNotFound`.
- Under "always" a present image is pulled again, and a failed pull falls back on it.
"""

from __future__ import annotations

from typing import get_args

from rock_core import BadRequest, ImageNotFound

from ._runtime import PullPolicy

PULL_POLICIES: tuple[PullPolicy, ...] = get_args(PullPolicy)


def check_policy(policy: PullPolicy) -> None:
    """`BadRequest` for an unknown policy (a caller may pass any string at run time); a runtime
    checks it before it asks the engine anything."""
    if policy not in PULL_POLICIES:
        raise BadRequest(f"pull policy {policy!r} is not one of {', '.join(PULL_POLICIES)}")


def must_pull(image: str, policy: PullPolicy, present: bool) -> bool:
    """Whether `image` must be pulled now (`present`: the engine holds it already), for a
    policy `check_policy` let through. `ImageNotFound` for a missing image under "never"."""
    if present:
        return policy == "always"
    if policy == "never":
        raise ImageNotFound(
            f"image {image!r} is not on this host and the pull policy is 'never'", image=image
        )
    return True


def unpulled(image: str, present: bool, why: object) -> ImageNotFound | None:
    """How a failed pull of `image` ends: None if a present copy will do, else the error."""
    if present:
        return None
    return ImageNotFound(
        f"image {image!r} is not on this host and could not be pulled: {why}", image=image
    )


__all__ = ["PULL_POLICIES", "check_policy", "must_pull", "unpulled"]
