"""The `rock` commands' one way to show tables, sizes, durations and times, and to parse them."""

from __future__ import annotations

import json
import sys
import time

import msgspec
import pytest

from rock_core import BadRequest
from rock_sdk import _cli_format
from rock_sdk._cli_base import say_error
from rock_sdk._cli_format import (
    Column,
    duration,
    parse_duration,
    plain_table,
    show_json,
    show_rows,
    size_text,
    timestamp,
)


def test_a_table_is_aligned_with_no_trailing_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    plain_table([("POOL", "SANDBOX", "AGE"), ("a-long-pool", "sb-1", "5s"), ("p", "sb-22", "")])
    assert capsys.readouterr().out == (
        "POOL         SANDBOX  AGE\na-long-pool  sb-1     5s\np            sb-22\n"
    )


class Pet(msgspec.Struct):
    name: str
    born: float
    tags: list[str]


PETS = [Pet("rex", 1_700_000_000.0, ["dog"]), Pet("tom", 0.0, [])]
COLUMNS: list[Column[Pet]] = [
    Column("NAME", lambda p: p.name),
    Column("BORN", lambda p: timestamp(p.born)),
    Column("TAGS", lambda p: ",".join(p.tags)),
]


def test_rows_are_a_plain_table_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    show_rows(PETS, COLUMNS)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "BORN", "TAGS"]
    assert lines[1].split()[0] == "rex" and lines[1].endswith("dog")
    assert lines[2].split() == ["tom", "-"]
    assert "\x1b" not in "".join(lines), "no colour codes in a pipe"


def test_the_same_rows_as_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    show_rows(PETS, COLUMNS, json=True)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == [
        {"name": "rex", "born": 1_700_000_000.0, "tags": ["dog"]},
        {"name": "tom", "born": 0.0, "tags": []},
    ]


def test_rows_are_drawn_by_rich_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cli_format, "stdout_is_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", "80")
    show_rows(PETS, COLUMNS)
    out = capsys.readouterr().out
    assert "NAME" in out and "rex" in out and "tom" in out
    assert out.splitlines()[0].split() == ["NAME", "BORN", "TAGS"]


def test_a_report_is_indented_json(capsys: pytest.CaptureFixture[str]) -> None:
    show_json(PETS[0])
    out = capsys.readouterr().out
    assert json.loads(out)["name"] == "rex"
    assert out.startswith('{\n  "name": "rex"')


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
    ("text", "seconds"),
    [("30", 30.0), ("1.5", 1.5), ("1.5s", 1.5), ("5m", 300.0), ("2 min", 120.0), ("2h", 7200.0)],
)
def test_one_duration_parser(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1", "5d", "soon", "1e3"])
def test_a_bad_duration_is_a_bad_request_naming_the_option(text: str) -> None:
    with pytest.raises(BadRequest, match=rf"^--timeout {text!r} is not a duration such as '30'"):
        parse_duration(text)


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


def test_a_failure_is_one_line_plain_in_a_pipe_and_red_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    say_error("rock ps", "no Docker engine answers")
    assert capsys.readouterr().err == "rock ps: no Docker engine answers\n"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setenv("FORCE_COLOR", "1")
    say_error("rock ps", "no Docker engine answers")
    err = capsys.readouterr().err
    assert "\x1b[" in err and err.count("\n") == 1
    assert "rock ps: " in err and "no Docker engine answers" in err
