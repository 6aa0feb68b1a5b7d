"""The line the core runs on an SSH host to start an agent: where it finds `rock-agent`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rock_core._addresses import parse as parse_address
from rock_core._ssh import _ensure_command


def fake_agent(path: Path, name: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "{name} $*"\n')
    path.chmod(0o755)


def run_on_host(line: str, home: Path, path: str) -> subprocess.CompletedProcess[str]:
    # What sshd does with an exec request: the login shell runs the line.
    env = {"HOME": str(home), "PATH": path}
    return subprocess.run(["/bin/sh", "-c", line], env=env, capture_output=True, text=True)


def test_default_agent_is_taken_from_path_first(tmp_path: Path) -> None:
    fake_agent(tmp_path / "bin" / "rock-agent", "from-path")
    fake_agent(tmp_path / "home" / ".local" / "bin" / "rock-agent", "from-pipx")
    shown, line = _ensure_command(parse_address("ssh://h?socket=/run/a.sock"))
    result = run_on_host(line, tmp_path / "home", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert shown == ["rock-agent", "ensure", "--socket", "/run/a.sock"]
    assert result.stdout == "from-path ensure --socket /run/a.sock\n", result.stderr


def test_default_agent_is_found_where_pipx_puts_it(tmp_path: Path) -> None:
    fake_agent(tmp_path / "home" / ".local" / "bin" / "rock-agent", "from-pipx")
    _, line = _ensure_command(parse_address("ssh://h"))
    result = run_on_host(line, tmp_path / "home", "/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from-pipx ensure\n"


@pytest.mark.skipif(os.path.exists("/opt/rock-agent/bin/rock-agent"), reason="installed here")
def test_no_agent_anywhere_is_status_127(tmp_path: Path) -> None:
    _, line = _ensure_command(parse_address("ssh://h"))
    result = run_on_host(line, tmp_path / "home", "/usr/bin:/bin")
    assert result.returncode == 127
    assert result.stderr == "rock-agent: command not found\n"


def test_a_named_agent_is_run_as_given(tmp_path: Path) -> None:
    fake_agent(tmp_path / "mine" / "agent", "mine")
    shown, line = _ensure_command(parse_address(f"ssh://h?agent={tmp_path}/mine/agent%20--quiet"))
    assert line == f"{tmp_path}/mine/agent --quiet ensure"
    result = run_on_host(line, tmp_path, "/usr/bin:/bin")
    assert result.stdout == "mine --quiet ensure\n"
    assert shown[-1] == "ensure"
