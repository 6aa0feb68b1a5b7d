"""`rock logs` options read as docker reads them: `--tail N|all`, `--since` as a duration
before now, a unix time or an ISO date and time."""

from __future__ import annotations

import datetime

import pytest

from rock_core import BadRequest
from rock_sdk._cli_logs import parse_since, parse_tail

NOW = 1_700_000_000.0


def test_tail_is_a_number_of_lines_or_all() -> None:
    assert parse_tail("all") == parse_tail("ALL") is None
    assert (parse_tail("0"), parse_tail("25")) == (0, 25)
    for bad in ("-1", "1.5", "ten", ""):
        with pytest.raises(BadRequest, match=f"^--tail {bad!r} is not a number of lines"):
            parse_tail(bad)


def test_since_is_a_duration_ago_a_unix_time_or_an_iso_date() -> None:
    assert parse_since("10m", NOW) == NOW - 600
    assert parse_since("1.5h", NOW) == NOW - 5400
    assert parse_since("30s", NOW) == NOW - 30
    assert parse_since("1700000123", NOW) == 1700000123.0  # a bare number: a unix time
    assert parse_since("1700000123.5", NOW) == 1700000123.5
    assert parse_since("2023-11-14T22:13:20Z", NOW) == 1700000000.0
    assert parse_since("2023-11-14T23:13:20+01:00", NOW) == 1700000000.0
    local = datetime.datetime(2024, 5, 1, 12, 0).timestamp()  # no zone: local time
    assert parse_since("2024-05-01T12:00", NOW) == local
    for bad in ("yesterday", "-5m", "10 parsecs", ""):
        with pytest.raises(BadRequest, match=f"^--since {bad!r} is not a duration"):
            parse_since(bad, NOW)
