"""A lost link is reported once: in the error the caller gets, not also in a warning printed
by Python's last-resort handler (the core's logger has a `NullHandler`)."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import os, signal, subprocess
import anyio
from rock_core import HostUnavailable, open_cluster

async def main():
    async with open_cluster(["local"]) as cluster:
        (host,) = cluster.hosts.values()
        children = subprocess.run(
            ["pgrep", "-P", str(os.getpid())], capture_output=True, text=True
        ).stdout.split()
        for pid in children:  # the local agent dies
            os.kill(int(pid), signal.SIGKILL)
        with anyio.fail_after(60):
            while host.state == "connected":  # until the cluster has seen (and logged) it
                await anyio.sleep(0.01)
        try:
            host.link()
        except HostUnavailable as exc:
            print(exc, flush=True)

anyio.run(main)
"""


def test_a_lost_link_is_reported_once(docker_engine: None) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert done.stdout.startswith("host "), output
    assert "(last error: the agent closed the link)" in done.stdout, output
    assert output.count("the agent closed the link") == 1, output
