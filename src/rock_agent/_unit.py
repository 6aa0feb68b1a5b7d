"""The systemd unit that runs the agent as a service: its text, from a checked `UnitConfig`.

The unit is a template shipped in this package (``data/rock-agent.service``); its comments say
why each setting is there. `render_unit` fills it in from a `UnitConfig`, checking every value
first, so a unit `rock-agent install` (`_install`) writes either starts or was never written.

Rules:
- The unit only carries the options an operator chose; everything else is the agent's default
  (so an upgraded agent's new defaults apply without a reinstall).
- Values in, text out: nothing here writes a file or calls systemd (`_install` does).
"""

from __future__ import annotations

import grp
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from string import Template

from rock_core._errors import BadRequest

from ._version import AGENT_VERSION

SERVICE = "rock-agent"
UNIT_NAME = f"{SERVICE}.service"
DEFAULT_SOCKET = "/run/rock-agent/agent.sock"
MARKER = "# Written by `rock-agent install`"
HOME_DIRS = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def group_id(name: str) -> int:
    """The id of the group `name`; a clear `BadRequest` when this host has no such group."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise BadRequest(
            f"no group named {name!r} on this host (for --socket-group); "
            f"create it first: groupadd {name}"
        ) from None


def default_command() -> tuple[str, ...]:
    """How the unit runs this very installation: its interpreter (unresolved, so a virtual
    environment stays in effect) with ``-m rock_agent``."""
    return (sys.executable, "-m", "rock_agent")


@dataclass(frozen=True)
class UnitConfig:
    """What `rock-agent install` puts into the unit; `None` leaves an option to the agent."""

    command: tuple[str, ...] = field(default_factory=default_command)
    socket: str = DEFAULT_SOCKET
    socket_group: str | None = None
    host_id: str | None = None
    lease: float | None = None
    log_level: str | None = None


def render_unit(config: UnitConfig) -> str:
    """The unit file's text for `config`; `BadRequest` names the first value that is wrong."""
    runtime_dir = _runtime_directory(config.socket)
    _check_command(config.command)
    args = [*config.command, "serve", "--socket", config.socket]
    if config.socket_group is not None:
        group_id(config.socket_group)
        args += ["--socket-group", config.socket_group]
    if config.host_id is not None:
        if not config.host_id or not config.host_id.isprintable():
            raise BadRequest(f"host id {config.host_id!r} must be non-empty printable text")
        args += ["--host-id", config.host_id]
    if config.lease is not None:
        if not config.lease > 0:
            raise BadRequest(f"lease must be a positive number of seconds, got {config.lease}")
        args += ["--lease", f"{config.lease:g}"]
    if config.log_level is not None:
        if config.log_level.upper() not in LOG_LEVELS:
            raise BadRequest(
                f"log level {config.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
            )
        args += ["--log-level", config.log_level.upper()]
    home = _home_paths(config.command)
    if config.socket_group is None:
        mode, capabilities = "0700", "CAP_KILL"
        dir_note = "Owner-only: only root reaches the socket."
    else:
        mode, capabilities = "0711", "CAP_KILL CAP_CHOWN"
        dir_note = (
            "Others may pass through (0711) but not list it: the socket's own mode "
            f"(0660, group {config.socket_group}) decides who connects."
        )
    if home:
        protect_home = "read-only"
        home_note = f"Home directories are read-only, not hidden: this installation uses {home[0]}."
    else:
        protect_home = "yes"
        home_note = "Home directories are hidden: nothing the agent runs lives there."
    template = Template(resources.files(__package__).joinpath("data", UNIT_NAME).read_text())
    return template.substitute(
        version=AGENT_VERSION,
        exec_start=" ".join(_systemd_quote(arg) for arg in args),
        runtime_directory=runtime_dir,
        runtime_directory_mode=mode,
        runtime_directory_note=dir_note,
        capabilities=capabilities,
        protect_home=protect_home,
        protect_home_note=home_note,
    )


def _runtime_directory(socket: str) -> str:
    """The socket's directory relative to /run (systemd makes it: RuntimeDirectory=)."""
    path = PurePosixPath(socket)
    parts = path.parts
    if not path.is_absolute() or ".." in parts or len(parts) < 4 or parts[1] != "run":
        raise BadRequest(
            f"socket {socket!r} must be a path in a directory under /run (as in {DEFAULT_SOCKET}): "
            "systemd makes that directory at start and removes it at stop"
        )
    relative = str(path.parent.relative_to("/run"))
    if not all(c.isalnum() or c in "-_./" for c in relative):
        raise BadRequest(f"socket directory /run/{relative} may hold only letters, digits, - _ .")
    return relative


def _check_command(command: tuple[str, ...]) -> None:
    if not command:
        raise BadRequest("the agent command is empty")
    program = Path(command[0])
    if not program.is_absolute():
        raise BadRequest(f"the agent program must be an absolute path, got {command[0]!r}")
    if not (program.is_file() and os.access(program, os.X_OK)):
        raise BadRequest(f"the agent program {program} is not an executable file")


def _home_paths(command: tuple[str, ...]) -> list[str]:
    """The paths under a home directory that running `command` reads.

    That is the program, the interpreter its `#!` line names, and, when the unit runs this
    very installation, its prefix and packages (a pyenv Python or an editable checkout).
    """
    import rock_agent

    program = Path(command[0])
    candidates = [program, program.resolve()]
    interpreter = _shebang(program)
    if interpreter is not None:
        candidates += [interpreter, interpreter.resolve()]
    if command == default_command():
        candidates += [Path(sys.prefix), Path(sys.base_prefix)]
        candidates.append(Path(rock_agent.__file__).resolve().parent)
    found: list[str] = []
    for path in candidates:
        posix = PurePosixPath(path)
        if any(posix.is_relative_to(home) for home in HOME_DIRS) and str(path) not in found:
            found.append(str(path))
    return found


def _shebang(program: Path) -> Path | None:
    try:
        with program.open("rb") as file:
            first = file.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    return Path(words[0]) if words and words[0].startswith("/") else None


def _systemd_quote(arg: str) -> str:
    """One ExecStart= argument: %-specifiers and $-expansion escaped, quoted if needed."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    if not escaped or any(c.isspace() or c in "'\";" for c in arg):
        return f'"{escaped}"'
    return escaped


__all__ = [
    "DEFAULT_SOCKET",
    "LOG_LEVELS",
    "MARKER",
    "SERVICE",
    "UNIT_NAME",
    "UnitConfig",
    "default_command",
    "group_id",
    "render_unit",
]
