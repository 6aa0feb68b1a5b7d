"""Defaults and limits of the core's options, for layers that offer the same options (the SDK).

A layer over the core that takes these options passes them through unchanged; it names the
core's defaults here instead of repeating their values, so the two cannot disagree.

Rules:
- Times are seconds. `queue_timeout` checks a create's queue timeout as the core does (a
  positive finite number, or None / ``math.inf`` for no limit) and raises `rock_core.BadRequest`
  naming the option otherwise.
- `CLEANUP_TIMEOUT` bounds every shielded cleanup (deletes on exit or cancel), so a hung engine
  never hangs an exit. Members of a pool carry the label `POOL_LABEL` (its value: the pool's
  name).
"""

from ._options import DEFAULT_QUEUE_TIMEOUT, queue_timeout
from ._pool import CLEANUP_TIMEOUT, DEFAULT_PREPARE_TIMEOUT, DEFAULT_REFILL_CONCURRENCY, POOL_LABEL

__all__ = [
    "CLEANUP_TIMEOUT",
    "DEFAULT_PREPARE_TIMEOUT",
    "DEFAULT_QUEUE_TIMEOUT",
    "DEFAULT_REFILL_CONCURRENCY",
    "POOL_LABEL",
    "queue_timeout",
]
