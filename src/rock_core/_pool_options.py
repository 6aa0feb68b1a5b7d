"""`PoolOptions`: how a warm pool sizes, refills and prepares its members, written out once.

Rules:
- Every option is validated when a `PoolOptions` is made: a bad value raises `BadRequest` naming
  the option and the value. A `PoolOptions` that exists is valid, so nothing downstream checks.
- `rock_core.open_pool(cluster, spec, options=None, **changes)`, the SDK's `open_pool` and
  `Cluster.open_pool` all take `options` plus keyword changes to it (`with_changes`), so the
  list of options is written here and nowhere else; an unknown keyword is a `BadRequest`.
- A pool's name labels its members ``rock.pool=NAME``; by default it is made from the spec
  (`default_pool_name`: the image made label-safe plus a digest of the spec), so it is stable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ._errors import BadRequest
from ._options import seconds, whole
from ._protocol import SandboxSpec

if TYPE_CHECKING:
    from ._records import SandboxRecord

POOL_LABEL = "rock.pool"
DEFAULT_REFILL_CONCURRENCY = 4
DEFAULT_PREPARE_TIMEOUT = 300.0  # seconds `prepare` may take on one member
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

Prepare = Callable[["SandboxRecord"], Awaitable[None]]
"""Run on every member before it is handed out (after a reset too); an error discards it."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PoolOptions:
    """How a warm pool behaves (see `rock_core._pool`'s rules for what each one drives).

    - `min_size`: members kept ready; `max_size` (default `min_size`, at least 1): the most the
      pool holds (ready and being made) when misses have raised its target.
    - `name`: labels members ``rock.pool=NAME`` (default: the image and a digest of the spec);
      unique among the cluster's open pools.
    - `refill_concurrency`: refills in flight at most; `refill_queue_timeout`: seconds a refill
      waits for room before it gives up; `shrink_after`: seconds without a miss before the
      target drops by one and idle members beyond it are deleted.
    - `prepare`: awaited with every member before it is handed out (after a reset too); one
      that runs longer than `prepare_timeout` seconds fails with `TimedOut` (and the member
      is deleted).
    """

    min_size: int = 1
    max_size: int | None = None
    name: str | None = None
    refill_concurrency: int = DEFAULT_REFILL_CONCURRENCY
    refill_queue_timeout: float = 2.0
    shrink_after: float = 60.0
    prepare: Prepare | None = None
    prepare_timeout: float = DEFAULT_PREPARE_TIMEOUT

    def __post_init__(self) -> None:
        min_size = whole(self.min_size, "min_size", 0)
        if self.max_size is not None:
            max_size = whole(self.max_size, "max_size", 1)
            if max_size < max(min_size, 1):
                raise BadRequest(
                    f"max_size must be >= min_size and >= 1, got min_size={min_size}, "
                    f"max_size={max_size}"
                )
        whole(self.refill_concurrency, "refill_concurrency", 1)
        for what in ("refill_queue_timeout", "shrink_after", "prepare_timeout"):
            object.__setattr__(self, what, seconds(getattr(self, what), what))
        if self.prepare is not None and not callable(self.prepare):
            raise BadRequest(f"prepare must be an async callable or None, got {self.prepare!r}")
        if self.name is not None:
            check_pool_name(self.name)

    @property
    def most(self) -> int:
        """The most members the pool holds: `max_size`, by default `min_size` (at least 1)."""
        return max(self.min_size, 1) if self.max_size is None else self.max_size

    @classmethod
    def of(cls, options: object = None, **changes: Any) -> PoolOptions:
        """`options` (a `PoolOptions` or None: the defaults) with keyword `changes` applied
        (`BadRequest` for anything else, or for a bad change)."""
        return options_of(options, changes)

    def with_changes(self, **changes: Any) -> PoolOptions:
        """A copy with `changes` applied (and validated); `BadRequest` for an unknown option."""
        if not changes:
            return self
        unknown = sorted(set(changes) - set(_FIELDS))
        if unknown:
            raise BadRequest(
                f"unknown pool option {unknown[0]!r}: the options are {', '.join(_FIELDS)}"
            )
        return dataclasses.replace(self, **changes)

    def pool_name(self, spec: SandboxSpec) -> str:
        """The pool's name for `spec`: `name`, or the default one; `BadRequest` if the spec's
        own ``rock.pool`` label names another pool."""
        name = default_pool_name(spec) if self.name is None else self.name
        labelled = spec.labels.get(POOL_LABEL)
        if labelled is not None and labelled != name:
            raise BadRequest(
                f"the spec's label {POOL_LABEL}={labelled!r} differs from the pool's name {name!r}"
            )
        return name


_FIELDS = tuple(field.name for field in dataclasses.fields(PoolOptions))


def options_of(options: object, changes: dict[str, Any]) -> PoolOptions:
    """`options` (a `PoolOptions` or None: the defaults) with keyword `changes` applied."""
    if options is None:
        options = PoolOptions()
    if not isinstance(options, PoolOptions):
        raise BadRequest(f"options must be a PoolOptions or None, got {options!r}")
    return options.with_changes(**changes)


def check_pool_name(name: object) -> str:
    """`name` if it is a valid pool name (it becomes a label value), else `BadRequest`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest(
            f"pool name {name!r} must be 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def default_pool_name(spec: SandboxSpec) -> str:
    """A stable name for a pool of `spec`: the image made label-safe plus a digest of the spec."""
    digest = hashlib.sha256(msgspec.msgpack.encode(spec)).hexdigest()[:6]
    image = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.image).strip("-_.") or "pool"
    return f"{image[:48]}-{digest}"


__all__ = [
    "DEFAULT_PREPARE_TIMEOUT",
    "DEFAULT_REFILL_CONCURRENCY",
    "POOL_LABEL",
    "PoolOptions",
    "Prepare",
    "check_pool_name",
    "default_pool_name",
    "options_of",
]
