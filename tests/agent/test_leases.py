"""The agent's owner leases, as plain synchronous rules (virtual time)."""

from __future__ import annotations

import math

import pytest

from rock_agent._leases import Leases
from rock_core._errors import BadRequest
from rock_core._options import MAX_LEASE


def test_a_connected_owner_never_expires() -> None:
    leases = Leases(10)
    assert leases.connect("a", now=0) == 10
    assert leases.expired(1000) == []
    assert leases.deadline("a") is None


def test_the_lease_runs_from_the_last_message_after_disconnect() -> None:
    leases = Leases(10)
    leases.connect("a", now=0)
    leases.renew("a", now=5)
    assert leases.disconnect("a", last_heard=6) == 0
    assert leases.deadline("a") == 16
    assert leases.expired(15.9) == []
    assert leases.expired(16) == ["a"]
    leases.forget("a")
    assert leases.expired(100) == [] and len(leases) == 0


def test_reconnecting_before_the_end_keeps_the_owner() -> None:
    leases = Leases(10)
    leases.connect("a", now=0)
    leases.disconnect("a", last_heard=1)
    leases.connect("a", now=9)
    assert leases.expired(50) == []
    assert leases.connected("a")


def test_an_owner_with_two_connections_needs_both_closed() -> None:
    leases = Leases(10)
    leases.connect("a", now=0)
    leases.connect("a", now=0)
    assert leases.disconnect("a", last_heard=1) == 1
    assert leases.expired(100) == []
    assert leases.disconnect("a", last_heard=2) == 0
    assert leases.expired(12) == ["a"]


def test_owners_seen_only_in_labels_get_a_full_lease_from_then() -> None:
    leases = Leases(10)
    leases.seen("old", now=100)
    assert leases.deadline("old") == 110
    leases.seen("old", now=105)  # seeing it again does not extend it
    assert leases.expired(110) == ["old"]


def test_requested_lease_is_clamped_and_zero_means_default() -> None:
    leases = Leases(60, minimum=5, maximum=600)
    assert leases.grant(0) == 60
    assert leases.grant(1) == 5
    assert leases.grant(10_000) == 600
    assert leases.connect("a", now=0, requested=30) == 30
    leases.disconnect("a", last_heard=0)
    assert leases.deadline("a") == 30


def test_expired_owners_come_oldest_first() -> None:
    leases = Leases(10)
    for owner, at in (("b", 5), ("a", 1), ("c", 3)):
        leases.connect(owner, now=at)
        leases.disconnect(owner, last_heard=at)
    assert leases.expired(100) == ["a", "c", "b"]


def test_renewing_an_unknown_owner_is_harmless() -> None:
    leases = Leases(10)
    leases.renew("ghost", now=1)
    assert leases.disconnect("ghost", last_heard=1) == 0
    assert len(leases) == 0


def test_a_stale_connection_closing_never_shortens_the_lease() -> None:
    leases = Leases(10)
    leases.connect("a", now=0)
    leases.connect("a", now=0)
    leases.renew("a", now=50)  # heard on the second connection
    leases.disconnect("a", last_heard=1)  # the first one, silent since 1, is closed
    leases.disconnect("a", last_heard=50)
    assert leases.deadline("a") == 60
    assert leases.length("a") == 10 and leases.length("unknown") == 10


def test_every_lease_the_core_accepts_is_granted_in_full() -> None:
    leases = Leases(60)
    assert leases.grant(3 * 86400) == 3 * 86400  # was cut to one day
    assert leases.grant(MAX_LEASE) == MAX_LEASE == 7 * 86400


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 0.0, 8 * 86400.0])
def test_a_default_lease_that_would_never_end_or_never_start_is_refused(bad: float) -> None:
    with pytest.raises(BadRequest) as info:
        Leases(bad)
    assert str(info.value) == (
        f"the default lease must be a positive, finite number of seconds up to 604800, got {bad!r}"
    )
