"""The cipher an SSH link negotiates with the real OpenSSH server on loopback (127.0.0.1:2222).

AES-GCM is offered first (it halves the caller's CPU per byte moved, see `rock_core._ssh`),
unless the user's SSH config names its ciphers: then that choice is the one made.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_core import SshOptions
from rock_core._addresses import parse
from rock_core._ssh import FAST_CIPHERS, open_ssh_stream

SSH_DIR = Path(os.environ.get("ROCK_SSH_DIR", "/tmp/rock-sshd"))
KEY = str(SSH_DIR / "id")
KNOWN_HOSTS = str(SSH_DIR / "known_hosts")

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])]


@pytest.fixture(scope="module")
def agent_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A socket path for this module's on-demand agent; the agent is stopped afterwards."""
    path = str(tmp_path_factory.mktemp("ssh-cipher-agent") / "agent.sock")
    yield path
    subprocess.run(["pkill", "-TERM", "-f", f"serve --socket {path}"], check=False)


async def test_aes_gcm_is_chosen_by_default(agent_socket: str) -> None:
    where = parse(f"ssh://root@127.0.0.1:2222?socket={agent_socket}")
    options = SshOptions(known_hosts=KNOWN_HOSTS, client_keys=[KEY])
    async with open_ssh_stream(where, options) as stream:
        assert stream.cipher == FAST_CIPHERS[0].decode()


async def test_the_ssh_configs_ciphers_win(agent_socket: str, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        textwrap.dedent(
            f"""\
            Host rock-cipher
                HostName 127.0.0.1
                Port 2222
                User root
                IdentityFile {KEY}
                UserKnownHostsFile {KNOWN_HOSTS}
                Ciphers chacha20-poly1305@openssh.com,aes128-ctr
            """
        )
    )
    where = parse(f"ssh://rock-cipher?socket={agent_socket}")
    async with open_ssh_stream(where, SshOptions(config=[str(config)])) as stream:
        assert stream.cipher == "chacha20-poly1305@openssh.com"
