"""The options of `open_cluster` (`ClusterOptions`, and a create's `queue_timeout`), checked
before anything starts.

Rules:
- `ClusterOptions` is documented once, here; `open_cluster(hosts, options, **changes)` and the
  SDK take the same fields as keywords and forward them without listing them again.
- A time is a number of seconds: an int or float (never a bool or a str), finite and > 0.
  A queue timeout may also be None or ``math.inf``: wait for room without a limit.
- A count is an int (never a bool) within its bounds.
- The lease must outlast the longest silence of a live link. The core pings each agent
  `heartbeat` seconds after the previous answer and waits at most `heartbeat_timeout` seconds
  for the next one (else it takes the link for broken and reconnects), and every message renews
  the owner's lease. So a healthy link can be silent for up to ``heartbeat + heartbeat_timeout``
  seconds, while a socket agent closes a link silent for longer than the lease (and reaps the
  owner's sandboxes once the lease then ends): ``lease > heartbeat + heartbeat_timeout``.
- Every refusal is a `BadRequest` naming the option and the value given.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ._errors import BadRequest
from ._scheduler import Scheduler
from ._schema import LeaseSeconds
from ._ssh import SshOptions
from ._start_gate import StartGate, check_start_gate

Policy = Literal["spread", "binpack"]

MAX_LEASE: float = get_args(LeaseSeconds)[1].le  # 7 days: the agent grants no longer lease
SECONDS_RULE = "must be a positive, finite number of seconds"
DEFAULT_QUEUE_TIMEOUT = 60.0  # seconds a create waits for room before `CapacityError`


def is_seconds(value: object) -> bool:
    """True for a positive, finite int or float (never a bool): a time in seconds."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value > 0
    )


def seconds(value: object, what: str) -> float:
    """`value` as a positive, finite number of seconds, or `BadRequest` naming `what`."""
    if not is_seconds(value):
        raise BadRequest(f"{what} {SECONDS_RULE}, got {value!r}")
    assert isinstance(value, int | float)
    return float(value)


def queue_timeout(value: object, what: str = "queue_timeout") -> float | None:
    """A queue timeout: None (or inf) waits for room without a limit; else `seconds`."""
    if value is None or (isinstance(value, float) and value == math.inf):
        return None
    try:
        return seconds(value, what)
    except BadRequest:
        raise BadRequest(
            f"{what} must be a positive number of seconds, or None to wait without a limit,"
            f" got {value!r}"
        ) from None


def whole(value: object, what: str, minimum: int) -> int:
    """`value` as an int >= `minimum`, or `BadRequest` naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadRequest(f"{what} must be a whole number >= {minimum}, got {value!r}")
    return value


def host_list(hosts: object, connector: type | None = None) -> list[Any]:
    """The hosts of `hosts`: one address, or a sequence of addresses (and, given a `connector`
    class, of instances of it)."""
    if isinstance(hosts, str):
        return [hosts]
    kinds: tuple[type, ...] = (str,) if connector is None else (str, connector)
    if not isinstance(hosts, Sequence) or not all(isinstance(h, kinds) for h in hosts):
        what = "addresses (str)" if connector is None else "addresses (str) or connectors"
        raise BadRequest(f"hosts must be an address or a list of {what}, got {hosts!r}")
    return list(hosts)


def check_cluster_options(
    *,
    owner: object,
    lease: object,
    grace: object,
    heartbeat: object,
    heartbeat_timeout: object,
    ssh: object,
    admin: object,
) -> None:
    """Refuse a bad option of `open_cluster` (see the module's rules)."""
    if owner is not None and (
        not isinstance(owner, str) or not 0 < len(owner) <= 256 or "\x00" in owner
    ):
        raise BadRequest(
            f"owner must be None or 1 to 256 characters with no NUL byte, got {owner!r}"
        )
    times = {
        name: seconds(value, name)
        for name, value in (
            ("lease", lease),
            ("grace", grace),
            ("heartbeat", heartbeat),
            ("heartbeat_timeout", heartbeat_timeout),
        )
    }
    if times["lease"] > MAX_LEASE:
        raise BadRequest(f"lease must be at most {MAX_LEASE:g} s (7 days), got {lease!r}")
    silence = times["heartbeat"] + times["heartbeat_timeout"]
    if times["lease"] <= silence:
        raise BadRequest(
            f"lease ({lease!r} s) must be longer than heartbeat + heartbeat_timeout"
            f" ({heartbeat!r} + {heartbeat_timeout!r} = {silence:g} s): a live link can be"
            " silent that long, and an agent drops a link silent for longer than its lease"
        )
    if ssh is not None and not isinstance(ssh, SshOptions):
        raise BadRequest(f"ssh must be None or an SshOptions, got {ssh!r}")
    if not isinstance(admin, bool):
        raise BadRequest(f"admin must be True or False, got {admin!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterOptions:
    """How a cluster behaves; every field is checked on construction (`BadRequest` naming it).

    - `owner`: who the sandboxes belong to; a program that reconnects with the same owner
      before its lease ends adopts its sandboxes again. None: a fresh id for this process.
    - `policy`: where sandboxes go: ``spread`` (the emptiest host) or ``binpack`` (the fullest
      that fits).
    - `max_queue`: how many creates may wait for room at once; `max_starts`: how many creates
      a host starts at once.
    - `lease`: seconds an agent keeps this owner's sandboxes after it stops hearing from it.
      It must be longer than ``heartbeat + heartbeat_timeout`` (see the module's rules).
    - `grace`: seconds a host may stay unreachable before its sandboxes are marked `lost`.
    - `heartbeat`, `heartbeat_timeout`: how often each link is pinged, and how long an answer
      may take before the link counts as broken (then: reconnect with backoff and jitter).
    - `ssh`: how to connect to ``ssh://`` hosts (`SshOptions`; default: the user's setup).
    - `admin`: connect as an administrator (the `rock` CLI): act on the sandboxes of every
      owner of this user (of every user, as root) by id: list, stop, start, remove, run,
      read and write files; create none.
    - `queue_timeout`: seconds a create may wait for room before `CapacityError` (default 60;
      None or ``math.inf``: no limit, kept as None); each create may set its own.
    - `start_gate`: a `StartGate` this cluster takes a permit from before each create goes to
      its agent, shared with other programs (a cluster-wide cap or rate: see
      `rock_sdk.integrations.ray.open_start_limiter`); None: no gate.
    - `gc_tuning`: while the cluster is open, raise the garbage collector's thresholds, so
      that tens of thousands of sandboxes do not stop the event loop for long collections
      (see `rock_core._gc_tuning`); False leaves the process's collector alone.
    """

    owner: str | None = None
    policy: Policy = "spread"
    max_queue: int = 10_000
    max_starts: int = 8
    lease: float = 60.0
    grace: float = 30.0
    heartbeat: float = 5.0
    heartbeat_timeout: float = 10.0
    ssh: SshOptions | None = None
    admin: bool = False
    queue_timeout: float | None = DEFAULT_QUEUE_TIMEOUT
    gc_tuning: bool = True
    start_gate: StartGate | None = None

    def __post_init__(self) -> None:
        make_scheduler(self.policy, self.max_queue, self.max_starts)  # checks the three
        check_cluster_options(
            owner=self.owner,
            lease=self.lease,
            grace=self.grace,
            heartbeat=self.heartbeat,
            heartbeat_timeout=self.heartbeat_timeout,
            ssh=self.ssh,
            admin=self.admin,
        )
        object.__setattr__(self, "queue_timeout", queue_timeout(self.queue_timeout))
        if not isinstance(self.gc_tuning, bool):
            raise BadRequest(f"gc_tuning must be True or False, got {self.gc_tuning!r}")
        check_start_gate(self.start_gate)

    def replace(self, **changes: Any) -> ClusterOptions:
        """A copy with `changes` (field names as keywords; `BadRequest` for an unknown one)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise BadRequest(
                f"unknown cluster option {unknown[0]!r}: the options are"
                f" {', '.join(f.name for f in dataclasses.fields(self))}"
            )
        return dataclasses.replace(self, **changes)

    def scheduler(self) -> Scheduler:
        """A new scheduler with this policy and these limits."""
        return make_scheduler(self.policy, self.max_queue, self.max_starts)


def cluster_options(options: ClusterOptions | None = None, **changes: Any) -> ClusterOptions:
    """`options` (default: the defaults) with `changes` applied; checked."""
    if options is not None and not isinstance(options, ClusterOptions):
        raise BadRequest(f"options must be None or a ClusterOptions, got {options!r}")
    base = options or ClusterOptions()
    return base.replace(**changes) if changes else base


def make_scheduler(policy: object, max_queue: object, max_starts: object) -> Scheduler:
    """The scheduler of a cluster; `BadRequest` for an unknown policy or a bad limit."""
    if policy not in ("spread", "binpack"):
        raise BadRequest(f"unknown placement policy {policy!r}: use 'spread' or 'binpack'")
    return Scheduler(
        "spread" if policy == "spread" else "binpack",
        max_queue=whole(max_queue, "max_queue", 0),
        default_max_starts=whole(max_starts, "max_starts", 1),
    )


__all__ = [
    "DEFAULT_QUEUE_TIMEOUT",
    "MAX_LEASE",
    "SECONDS_RULE",
    "ClusterOptions",
    "check_cluster_options",
    "cluster_options",
    "host_list",
    "is_seconds",
    "make_scheduler",
    "queue_timeout",
    "seconds",
    "whole",
]
