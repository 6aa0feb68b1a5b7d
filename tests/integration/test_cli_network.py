"""`rock run --allow/--allow-dns` and the network line of `rock status` (docs/network.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..conftest import SH_IMAGE
from .test_cli import cli, rock_bytes
from .test_network_policy import GATEWAY, listeners

__all__ = ["listeners"]  # the fixture, shared
pytestmark = [pytest.mark.docker, pytest.mark.slow]
FAILED = 125

HOLDER = """
import sys, anyio
from rock_sdk import NetworkPolicy, Sandbox, SandboxConfig

async def main():
    policy = NetworkPolicy(allow=["10.0.0.0/8", "1.2.3.4:80"], dns=["pypi.org"])
    async with Sandbox(SandboxConfig(image=sys.argv[1], memory="64m", network=policy)) as sb:
        print(sb.sandbox_id, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the test closes our stdin

anyio.run(main)
"""


def test_run_with_allow_reaches_only_what_is_allowed(
    docker_engine: None, listeners: list[int]
) -> None:
    allowed, denied = listeners
    script = (
        f"nc -w 5 {GATEWAY} {allowed} </dev/null && ! nc -w 5 {GATEWAY} {denied} </dev/null"
        " && nslookup pypi.org >/dev/null && ! nslookup deb.debian.org >/dev/null"
    )
    at = f"{GATEWAY}:{allowed}"
    r = rock_bytes("run", "--allow", at, "--allow-dns", "pypi.org", SH_IMAGE, "--", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"hello\n")
    assert b"Connection refused" in r.stderr


def test_run_refuses_bad_network_options_once() -> None:
    assert cli("run", "--allow", "1.2.3.4:0", SH_IMAGE, "--", "true") == (
        FAILED,
        b"",
        b"rock run: network policy entry '1.2.3.4:0': port '0' must be a number from 1 to 65535\n",
    )
    assert cli("run", "--allow-dns", "*.", SH_IMAGE, "--", "true")[0] == FAILED
    assert cli("run", "--network", "--allow", "10.0.0.0/8", SH_IMAGE, "--", "true") == (
        FAILED,
        b"",
        b"rock run: --network opens the whole network; --allow/--allow-dns restrict it\n",
    )


def test_status_shows_the_policy_as_text_and_json(docker_engine: None) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, SH_IMAGE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        sandbox_id = holder.stdout.readline().strip()
        assert sandbox_id, "the holder could not start its sandbox"
        code, out, _ = cli("status", sandbox_id)
        assert code == 0
        assert b"network     policy: allow 10.0.0.0/8, 1.2.3.4:80; dns pypi.org\n" in out
        code, out, _ = cli("status", "--json", sandbox_id)
        network = json.loads(out)["spec"]["network"]
        assert code == 0 and network == {"allow": ["10.0.0.0/8", "1.2.3.4:80"], "dns": ["pypi.org"]}
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)
