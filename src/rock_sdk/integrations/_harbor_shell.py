"""The shell lines behind Harbor's `exec`, and the tag of an image built for a task.

Plain functions, no I/O and no Harbor import, so they are tested on any Python: the Harbor
environment (`rock_sdk.integrations.harbor`) sends the line to one of its persistent sessions.

Rules:
- Each Harbor `exec` runs in a child shell of the session (``( ... )``), so its cwd, variables
  and `exit` never change the session, as one `docker exec` per command would not.
- The child's stdin is /dev/null (nothing waits on a terminal), and its stderr goes to a file
  of the session, read back after the command, so stdout and stderr stay apart.
- A user other than the session's is taken with `runuser` (a name) or `setpriv` (a numeric
  id, which needs no entry in /etc/passwd), as ``docker exec -u`` takes either.
- Every value is quoted with `shlex.quote`; a variable name the shell cannot export is a
  `ValueError` naming it.
"""

from __future__ import annotations

import re
import shlex

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TAG_PART = re.compile(r"[^a-z0-9]+")


def stderr_path(session: str) -> str:
    """The file that holds the stderr of the latest command of `session` (straight in /tmp,
    so no folder of ours must survive the commands)."""
    return f"/tmp/.rock-harbor-{session}.stderr"


def user_prefix(user: str | int | None, current: tuple[str, str]) -> list[str]:
    """The argv prefix that runs a command as `user` (none for the session's own user).

    `current` is the session's (name, uid).
    """
    if user is None:
        return []
    if isinstance(user, bool) or not isinstance(user, (str, int)):
        raise ValueError(f"user must be a name or a numeric id, got {user!r}")
    text = str(user)
    if text == "" or text in current:
        return []
    if text.isdigit():
        return ["setpriv", f"--reuid={text}", f"--regid={text}", "--clear-groups", "--"]
    return ["runuser", "-u", text, "--"]


def exec_line(
    command: str,
    *,
    shell: str,
    stderr_file: str,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    user: list[str] | None = None,
) -> str:
    """The session command that runs `command` with `shell -c` in a child shell."""
    for name in env or {}:
        if not _NAME.match(name):
            raise ValueError(f"environment variable name {name!r} cannot be exported by a shell")
    argv = [*(user or [])]
    if env:
        argv += ["env", *(f"{name}={value}" for name, value in env.items())]
    argv += [shell, "-c", command]
    body = " ".join(shlex.quote(part) for part in argv)
    if cwd:
        body = f"cd {shlex.quote(cwd)} && exec {body}"
    else:
        body = f"exec {body}"
    return f"( {body} ) </dev/null 2>{shlex.quote(stderr_file)}"


def image_tag(environment_name: str, content_id: str) -> str:
    """A local image tag for a task's environment: its name and a digest of its files."""
    name = _TAG_PART.sub("-", environment_name.lower()).strip("-")[:100] or "task"
    digest = _TAG_PART.sub("", content_id.lower())[:12] or "latest"
    return f"rock-harbor/{name}:{digest}"
