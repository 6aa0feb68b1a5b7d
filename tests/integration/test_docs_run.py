"""Every Python snippet of the README and docs/ runs as shown: each block is a whole program,
run in a fresh interpreter against the real engine (and, for cluster pages, the loopback sshd
reached the way a user's ``~/.ssh/config`` would, through ``$ROCK_HOSTS``).

Pages whose snippets another test runs are named in `OWN_TESTS`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
OWN_TESTS = {
    "docs/testing.md": "tests/agent/test_fake_docs.py",
    "docs/integrations.md": "tests/integrations/",
    "docs/cli.md": "tests/integration/test_cli_docs.py",
}
# Snippets that need more than the engine and sshd, by a word they hold, and the test that
# runs them (with what they need: a Ray cluster).
OWN_SNIPPETS = {"rock_sdk.integrations.ray": "tests/integrations/test_ray_transport.py"}
SSH_DIR = Path(os.environ.get("ROCK_SSH_DIR", "/tmp/rock-sshd"))


def snippets() -> Iterator[tuple[str, str]]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        name = str(page.relative_to(ROOT))
        if name in OWN_TESTS:
            continue
        text = page.read_text()
        for found in re.finditer(r"```python\n(.*?)```", text, flags=re.DOTALL):
            line = text.count("\n", 0, found.start()) + 1
            if any(word in found.group(1) for word in OWN_SNIPPETS):
                continue
            yield f"{name}:{line}", found.group(1)


SNIPPETS = dict(snippets())


@pytest.fixture(scope="module")
def user_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A home whose ~/.ssh reaches the loopback sshd, and the hosts a cluster page uses."""
    home = tmp_path_factory.mktemp("home")
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "known_hosts").write_text((SSH_DIR / "known_hosts").read_text())
    (ssh / "config").write_text(
        f"Host 127.0.0.1\n  Port 2222\n  User root\n  IdentityFile {SSH_DIR / 'id'}\n"
    )
    socket = str(home / "agent.sock")
    yield home, f"ssh://127.0.0.1?socket={socket}"
    subprocess.run(["pkill", "-TERM", "-f", f"serve --socket {socket}"], check=False)


def test_the_pages_have_snippets() -> None:
    assert len(SNIPPETS) >= 25
    assert any(key.startswith("README.md") for key in SNIPPETS)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("where", list(SNIPPETS))
def test_a_snippet_runs_as_shown(
    where: str, docker_engine: None, user_home: tuple[Path, str], tmp_path: Path
) -> None:
    home, hosts = user_home
    env = {
        **os.environ,
        "HOME": str(home),
        "ROCK_HOSTS": hosts,
        "PYTHONPATH": str(ROOT / "src"),
    }
    done = subprocess.run(
        [sys.executable, "-c", SNIPPETS[where]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-3000:]}"
