"""The shared admission's command-line options (`rock_agent._admit_options`): what they give
the agent, their environment defaults, and a one-line error with exit code 2 for a bad one."""

from __future__ import annotations

import pytest

from rock_agent._admit import DEFAULT_MAX_STARTS, Limits
from rock_agent._admit_options import limits_of
from rock_agent._cli import _parser

SOCKET = ["serve", "--socket", "/nonexistent/rock-agent.sock"]  # refused before it is used
STDIO = ["serve", "--stdio"]
NAMES = ("ROCK_AGENT_MAX_STARTS", "ROCK_AGENT_MAX_SANDBOXES", "ROCK_AGENT_CAPACITY")


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_enforce_capacity_on_a_socket_agent_only() -> None:
    assert limits_of(_parser().parse_args(SOCKET)) == Limits(
        max_starts=DEFAULT_MAX_STARTS, max_sandboxes=0, capacity=True
    )
    assert limits_of(_parser().parse_args(STDIO)) == Limits(capacity=False)
    forced = _parser().parse_args([*STDIO, "--capacity", "on", "--max-starts", "3"])
    assert limits_of(forced) == Limits(max_starts=3, capacity=True)
    off = _parser().parse_args([*SOCKET, "--capacity", "off", "--max-sandboxes", "12"])
    assert limits_of(off) == Limits(max_sandboxes=12, capacity=False)


def test_the_environment_sets_the_defaults_and_the_command_line_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROCK_AGENT_MAX_STARTS", "4")
    monkeypatch.setenv("ROCK_AGENT_MAX_SANDBOXES", "9")
    monkeypatch.setenv("ROCK_AGENT_CAPACITY", "off")
    assert limits_of(_parser().parse_args(SOCKET)) == Limits(
        max_starts=4, max_sandboxes=9, capacity=False
    )
    args = _parser().parse_args([*SOCKET, "--max-starts", "5", "--capacity", "on"])
    assert limits_of(args) == Limits(max_starts=5, max_sandboxes=9, capacity=True)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (
            ["--max-starts", "0"],
            "argument --max-starts: a whole number from 1 to 1000000 is needed, got '0'",
        ),
        (
            ["--max-starts", "nan"],
            "argument --max-starts: a whole number from 1 to 1000000 is needed, got 'nan'",
        ),
        (
            ["--max-starts", "2.5"],
            "argument --max-starts: a whole number from 1 to 1000000 is needed, got '2.5'",
        ),
        (
            ["--max-sandboxes", "-1"],
            "argument --max-sandboxes: a whole number from 0 to 1000000 is needed, got '-1'",
        ),
        (
            ["--max-sandboxes", "10000000"],
            "argument --max-sandboxes: a whole number from 0 to 1000000 is needed, got '10000000'",
        ),
        (["--capacity", "yes"], "argument --capacity: auto, on or off is needed, got 'yes'"),
    ],
)
def test_a_bad_value_is_a_one_line_error_and_exit_code_2(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _parser().parse_args([*SOCKET, *argv])
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"rock-agent serve: error: {error}"


def test_a_bad_value_in_the_environment_is_refused_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROCK_AGENT_CAPACITY", "maybe")
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(SOCKET)
    assert info.value.code == 2
    assert "argument --capacity: auto, on or off is needed, got 'maybe'" in capsys.readouterr().err
