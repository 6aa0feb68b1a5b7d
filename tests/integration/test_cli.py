"""The `rock` and `rock-agent` command lines, run as a user would."""

from __future__ import annotations

import subprocess
import sys

from ..conftest import PY_IMAGE, SH_IMAGE


def rock(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rock_sdk._cli", *args], capture_output=True, text=True, timeout=120
    )


def test_run_passes_output_and_exit_code(docker_engine: None) -> None:
    r = rock("run", PY_IMAGE, "--", "python3", "-c", "print('hi from', 6*7); raise SystemExit(3)")
    assert r.stdout == "hi from 42\n"
    assert r.returncode == 3


def test_run_with_env_and_workdir(docker_engine: None) -> None:
    r = rock("run", "-e", "WHO=rock", "-w", "/tmp", SH_IMAGE, "--", 'echo "$WHO in $(pwd)"')
    assert (r.stdout, r.returncode) == ("rock in /tmp\n", 0)


def test_run_timeout(docker_engine: None) -> None:
    r = rock("run", "--timeout", "1", SH_IMAGE, "--", "echo a; sleep 30")
    assert r.stdout == "a\n"
    assert r.returncode == 124
    assert "timed out after 1 s" in r.stderr


def test_run_missing_image(docker_engine: None) -> None:
    r = rock("run", "--pull", "never", "no-such/image:1", "--", "true")
    assert r.returncode == 125
    assert "image 'no-such/image:1' is not on this host" in r.stderr


def test_ps_and_rm(docker_engine: None) -> None:
    r = rock("ps")
    assert r.returncode == 0
    assert r.stdout.split("\n")[0].split() == ["SANDBOX", "IMAGE", "STATE", "AGE", "OWNER"]
    r = rock("rm", "sb-does-not-exist")
    assert r.returncode == 125
    assert "no sandbox 'sb-does-not-exist' on any host" in r.stderr


def test_agent_version() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "rock_agent", "version"], capture_output=True, text=True
    )
    assert r.returncode == 0
    assert r.stdout.strip()
