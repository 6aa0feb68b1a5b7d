"""The agent's command line refuses times that are not a positive, finite number of seconds.

NaN passes a ``<= 0`` check: a NaN lease would never end (its owner never reaped), a NaN reap
interval or idle exit would never fire. Each is refused as argparse refuses a bad value: one
error line naming the option, exit code 2.
"""

from __future__ import annotations

import pytest

from rock_agent._cli import _parser

SERVE = ["serve", "--socket", "/nonexistent/rock-agent.sock"]  # refused before it is used
LEASE_RULE = (
    "must be a positive, finite number of seconds up to 604800 ($ROCK_AGENT_LEASE sets the default)"
)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        ([*SERVE, "--lease", "nan"], f"argument --lease: {LEASE_RULE}, got 'nan'"),
        ([*SERVE, "--lease", "inf"], f"argument --lease: {LEASE_RULE}, got 'inf'"),
        ([*SERVE, "--lease", "-5"], f"argument --lease: {LEASE_RULE}, got '-5'"),
        ([*SERVE, "--lease", "0"], f"argument --lease: {LEASE_RULE}, got '0'"),
        ([*SERVE, "--lease", "691200"], f"argument --lease: {LEASE_RULE}, got '691200'"),
        ([*SERVE, "--lease", "soon"], f"argument --lease: {LEASE_RULE}, got 'soon'"),
        (
            [*SERVE, "--reap-interval", "nan"],
            "argument --reap-interval: must be a positive, finite number of seconds, got 'nan'",
        ),
        (
            [*SERVE, "--reap-interval", "0"],
            "argument --reap-interval: must be a positive, finite number of seconds, got '0'",
        ),
        (
            [*SERVE, "--idle-exit", "NaN"],
            "argument --idle-exit: must be a positive, finite number of seconds (or 0: never),"
            " got 'NaN'",
        ),
        (
            ["ensure", "--idle-exit", "-1"],
            "argument --idle-exit: must be a positive, finite number of seconds (or 0: never),"
            " got '-1'",
        ),
    ],
)
def test_a_bad_time_is_a_one_line_error_and_exit_code_2(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(argv)  # what `main` does first (never serves here)
    assert info.value.code == 2
    command = argv[0]
    assert capsys.readouterr().err.splitlines()[-1] == f"rock-agent {command}: error: {error}"


def test_a_bad_lease_in_the_environment_is_refused_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROCK_AGENT_LEASE", "nan")
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(SERVE)
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"rock-agent serve: error: argument --lease: {LEASE_RULE}, got 'nan'"
    )
    # A lease on the command line wins over the environment's, as before.
    assert _parser().parse_args([*SERVE, "--lease", "30"]).lease == 30.0


def test_good_times_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROCK_AGENT_LEASE", raising=False)
    args = _parser().parse_args([*SERVE, "--idle-exit", "0", "--reap-interval", "0.5"])
    assert (args.lease, args.idle_exit, args.reap_interval) == (60.0, 0.0, 0.5)
    monkeypatch.setenv("ROCK_AGENT_LEASE", "259200")  # 3 days: the core accepts up to 7
    assert _parser().parse_args(SERVE).lease == 259200.0
