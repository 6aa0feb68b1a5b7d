"""The CI's OpenSSH server on loopback answers with key auth and a verified host key.

The SSH cluster transport builds on this server; this test keeps its set-up honest.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh
import pytest

SSH_DIR = Path(os.environ.get("ROCK_SSH_DIR", "/tmp/rock-sshd"))

pytestmark = pytest.mark.anyio


async def test_sshd_key_auth_and_known_hosts() -> None:
    if not (SSH_DIR / "id").exists():
        pytest.fail(f"no test sshd in {SSH_DIR}: run `bash scripts/setup-host.sh`")
    async with asyncssh.connect(
        "127.0.0.1",
        port=2222,
        username="root",
        client_keys=[str(SSH_DIR / "id")],
        known_hosts=str(SSH_DIR / "known_hosts"),
    ) as conn:
        result = await conn.run("echo ssh-ok", check=True)
    assert result.stdout == "ssh-ok\n"


async def test_sshd_refuses_an_unknown_host_key(tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text(
        "[127.0.0.1]:2222 ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
    )
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with asyncssh.connect(
            "127.0.0.1",
            port=2222,
            username="root",
            client_keys=[str(SSH_DIR / "id")],
            known_hosts=str(tmp_path / "known_hosts"),
        ):
            pass
