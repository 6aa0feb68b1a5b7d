"""The start limiter's decisions (`_limiter_book`), as plain calls with `now` passed in."""

from __future__ import annotations

import math

import pytest

from rock_core import BadRequest
from rock_sdk.integrations._limiter_book import LimiterBook, check_name, limiter_config


def book(**limits: object) -> LimiterBook:
    return LimiterBook(limiter_config(**limits), 0.0)


def test_a_cap_grants_first_come_first_served() -> None:
    b = book(max_starts=2)
    for i, client in enumerate(["a", "b", "a"]):
        b.ask(client, f"t{i}", 0.0)
    assert b.pump(0.0) is not None  # a lease will end
    assert set(b.held) == {"t0", "t1"} and list(b.line) == ["t2"]
    b.ask("a", "t1", 0.1)  # asked again: no change
    b.release("b", "t0", 0.2)  # not b's token: no change
    assert set(b.held) == {"t0", "t1"}
    b.release("a", "t0", 0.3)
    b.pump(0.3)
    assert set(b.held) == {"t1", "t2"} and not b.line
    assert (b.peak, b.grants) == (2, 3)


def test_clients_are_served_in_turn() -> None:
    b = book(max_starts=1)
    for i in range(3):
        b.ask("a", f"a{i}", 0.0)
    b.ask("b", "b0", 0.1)
    b.ask("b", "b1", 0.1)
    b.ask("c", "c0", 0.2)
    order = []
    for step in range(6):
        b.pump(1.0 + step)
        (token,) = b.held
        order.append(token)
        b.release(token[0], token, 1.0 + step)
    assert order == ["a0", "b0", "c0", "a1", "b1", "a2"]
    assert not b.line and not b.queues and not b.turn


def test_a_rate_grants_at_most_burst_then_one_per_interval() -> None:
    b = book(rate=2.0, burst=2)
    for i in range(5):
        b.ask("a", f"t{i}", 0.0)
    assert b.pump(0.0) == pytest.approx(0.5)  # two at once, the next token in 0.5 s
    assert len(b.held) == 2
    assert b.pump(0.25) == pytest.approx(0.25)
    assert len(b.held) == 2
    b.pump(0.5)
    assert len(b.held) == 3
    b.pump(1.5)
    assert len(b.held) == 5 and b.bucket == pytest.approx(0.0)


def test_a_silent_client_loses_its_permits_and_its_place() -> None:
    b = book(max_starts=1, lease=10.0)
    b.ask("dead", "t0", 0.0)
    b.ask("dead", "t1", 0.0)
    b.ask("live", "t2", 0.0)
    b.pump(0.0)
    assert set(b.held) == {"t0"}
    b.renew("live", [], ["t2"], 8.0)
    assert b.pump(8.0) == pytest.approx(2.0 + 1e-3)  # when the dead client's lease ends
    b.pump(10.5)
    assert set(b.held) == {"t2"} and not b.line
    assert b.expired == 1 and "dead" not in b.seen


def test_a_renew_drops_what_the_client_no_longer_names_and_adopts_what_it_holds() -> None:
    b = book(max_starts=2)
    b.ask("a", "t0", 0.0)
    b.ask("a", "late", 0.0)  # its release came first: the client names it no more
    b.pump(0.0)
    b.renew("a", ["t0"], [], 1.0)
    assert set(b.held) == {"t0"}
    restarted = LimiterBook(b.config, 5.0, settle=11.0)
    restarted.ask("c", "t9", 5.0)
    restarted.pump(5.0)
    assert not restarted.held  # settling: nothing granted yet
    for client, holds in (("a", ["t0"]), ("b", ["t1", "t2"])):
        restarted.renew(client, holds, [], 6.0)
        restarted.renew(client, holds, [], 7.0)  # again: counted once
    assert set(restarted.held) == {"t0", "t1", "t2"} and restarted.adopted == 3
    assert restarted.pump(16.0) is not None
    assert "t9" in restarted.line  # over the cap: waits until two are back
    restarted.release("b", "t1", 16.5)
    restarted.release("b", "t2", 16.5)
    restarted.pump(16.5)
    assert "t9" in restarted.held and restarted.peak == 3


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({}, "needs max_starts (a cap) or rate"),
        ({"max_starts": 0}, "max_starts must be between 1 and 1000000, got 0"),
        ({"max_starts": -3}, "max_starts must be between 1 and 1000000, got -3"),
        ({"max_starts": 2.5}, "max_starts must be a whole number, got 2.5"),
        ({"max_starts": True}, "max_starts must be a whole number, got True"),
        ({"max_starts": 10**9}, "max_starts must be between 1 and 1000000"),
        ({"max_starts": "4"}, "max_starts must be a whole number, got '4'"),
        ({"rate": math.nan}, "rate must be finite, got nan"),
        ({"rate": math.inf}, "rate must be finite, got inf"),
        ({"rate": 0}, "rate must be above 0"),
        ({"rate": -1.0}, "rate must be above 0"),
        ({"rate": 1e12}, "rate must be above 0 and at most 1e+06/s"),
        ({"rate": "5"}, "rate must be a number, got '5'"),
        ({"rate": 2.0, "burst": 0}, "burst must be between 1 and 1000000, got 0"),
        ({"max_starts": 2, "burst": 4}, "burst applies to a rate"),
        ({"max_starts": 2, "lease": 0.5}, "lease must be between 1 and 3600 seconds"),
        ({"max_starts": 2, "lease": math.nan}, "lease must be finite"),
        ({"max_starts": 2, "lease": None}, "lease must be a number, got None"),
    ],
)
def test_bad_limits_are_bad_requests(limits: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        limiter_config(**limits)
    assert message in str(caught.value)


def test_names_and_default_burst() -> None:
    assert limiter_config(rate=7.9).burst == 7
    assert limiter_config(rate=0.2).burst == 1
    assert check_name("rock-starts.v1") == "rock-starts.v1"
    for bad in ("", "a b", "x" * 101, "nul\0", 5, None):
        with pytest.raises(BadRequest, match="a limiter's name must be 1-100 of"):
            check_name(bad)
