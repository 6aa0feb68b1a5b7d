"""The host pid of a sandbox's process, for tests that signal it from outside."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from rock_sdk import Sandbox


def host_pid(sb: Sandbox, pid_in_sandbox: int) -> int:
    """The host pid of a process of `sb`, from its pid inside the sandbox."""
    record = sb.cluster.record(sb.sandbox_id)
    assert record.info is not None
    init = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Pid}}", record.info.container_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    namespace = os.readlink(f"/proc/{init}/ns/pid")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "ns" / "pid") != namespace:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("NSpid:") and int(line.split()[-1]) == pid_in_sandbox:
                    return int(entry.name)
    raise AssertionError(f"no process {pid_in_sandbox} in sandbox {sb.sandbox_id}")
