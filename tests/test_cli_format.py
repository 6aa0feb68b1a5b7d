"""The `rock` commands' one way to show tables, sizes, durations and times."""

from __future__ import annotations

import time

import pytest

from rock_sdk._cli_format import duration, print_table, size_text, timestamp


def test_a_table_is_aligned_with_no_trailing_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    print_table([("POOL", "SANDBOX", "AGE"), ("a-long-pool", "sb-1", "5s"), ("p", "sb-22", "")])
    assert capsys.readouterr().out == (
        "POOL         SANDBOX  AGE\na-long-pool  sb-1     5s\np            sb-22\n"
    )


@pytest.mark.parametrize(
    ("seconds", "compact", "prose"),
    [
        (0.25, "0s", "0.25 s"),
        (45, "45s", "45 s"),
        (119.4, "119s", "119 s"),
        (120, "2m", "2 min"),
        (150, "2m", "2.5 min"),
        (7199, "120m", "120 min"),
        (7200, "2h", "2 h"),
        (5400 * 3, "4h", "4.5 h"),
    ],
)
def test_one_duration_formatter_for_cells_and_sentences(
    seconds: float, compact: str, prose: str
) -> None:
    assert duration(seconds, compact=True) == compact
    assert duration(seconds) == prose


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (512, "512B"), (2000, "2.0KiB"), (241 << 20, "241.0MiB"), (3 << 40, "3.0TiB")],
)
def test_sizes_are_in_binary_units(size: int, text: str) -> None:
    assert size_text(size) == text


def test_times_are_local_and_unset_ones_are_a_dash() -> None:
    stamp = 1_700_000_000.0
    local = time.localtime(stamp)
    assert timestamp(stamp) == time.strftime("%Y-%m-%d %H:%M", local)
    assert timestamp(stamp, seconds=True) == time.strftime("%Y-%m-%d %H:%M:%S", local)
    assert timestamp(0) == "-"
