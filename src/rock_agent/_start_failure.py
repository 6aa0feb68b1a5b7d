"""The container runtime's refusal to start a process, typed from what it said.

Rules:
- The runtime (runc, through the engine) tells why it could not start a process only as text;
  a missing working folder or program is `FileNotFound`, an unknown user or group, or a
  program that cannot be run, `BadRequest`, a sandbox that stopped meanwhile `SandboxFailed`
  (`stopped`). Text naming no cause known here is left to the caller (None).
- A request that needs a running sandbox and finds it stopped is refused the same way
  wherever it is checked (`not_running`: both runtimes' `connect`, `_stats`).
- Plain text in, an error out: no engine and no I/O here, so the shell (`_shell`) types a
  refusal of its boot the same way an exec's is typed (`_exec_stream`).
"""

from __future__ import annotations

import re

from rock_core import BadRequest, FileNotFound, RockError, SandboxFailed


def stopped(what: str, detail: str) -> SandboxFailed:
    """A request for a sandbox whose processes all ended (a `kill -9 -1` inside it ends its
    keepalive too)."""
    return SandboxFailed(
        f"{what}: the sandbox is not running (its processes have all ended): start it again, "
        f"or delete it ({detail})"
    )


def not_running(sandbox_id: str, status: str, need: str) -> BadRequest:
    """The refusal of a request that needs a running sandbox; `need` says what to do first."""
    return BadRequest(
        f"sandbox {sandbox_id} is not running ({status}); {need}", sandbox_id=sandbox_id
    )


_CWD = re.compile(r'chdir to cwd \("(?P<cwd>[^"]*)"\) set in config\.json failed: (?P<why>[^:]+)')
_PROGRAM = re.compile(r'exec: "(?P<program>[^"]*)": (?:stat [^:]*: )?(?P<why>[^:]+)')
_USER = re.compile(r"unable to find (?P<kind>user|group) (?P<name>[^:]+): (?P<why>[^\r\n]+)")
# What the runtime says when the container stopped after the exec was created.
_GONE = re.compile(r"in a (deleted|stopped) state|container \S+ is not running|task \S+ not found")


def start_failure(text: str, head: str) -> RockError | None:
    """The error for a process the container runtime could not start, from what it said.

    `head` names the attempt ("cannot run 'ls' in sandbox x"). A missing working folder or
    program is `FileNotFound`, an unknown user or group, or a program that cannot be run,
    `BadRequest`; None if the text names no cause known here.
    """
    text = text.replace("\r", "").strip()
    if found := _CWD.search(text):
        cwd, why = found["cwd"], found["why"].strip()
        if why == "no such file or directory":
            return FileNotFound(f"{head}: its working folder {cwd} does not exist")
        return BadRequest(f"{head}: its working folder {cwd} cannot be used: {why}")
    if found := _PROGRAM.search(text):
        name, why = found["program"], found["why"].strip()
        if why == "executable file not found in $PATH":
            return FileNotFound(f"{head}: program {name!r} not found on the PATH")
        if why == "no such file or directory":
            return FileNotFound(f"{head}: {name} not found")
        return BadRequest(f"{head}: {name} cannot be run: {why}")
    if found := _USER.search(text):
        return BadRequest(f"{head}: no {found['kind']} {found['name']!r} in the sandbox")
    if _GONE.search(text):
        return stopped(head, text)  # between the exec's creation and its start
    return None


__all__ = ["start_failure", "stopped"]
