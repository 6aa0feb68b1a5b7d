"""`rock-agent install` and `uninstall`: the systemd unit that runs the agent as a service.

The unit is a template shipped in this package (``data/rock-agent.service``); its comments say
why each setting is there. `render_unit` fills it in from a `UnitConfig`, checking every value
first, so a unit this module writes either starts or was never written.

The unit only carries the options an operator chose; everything else is the agent's default
(so an upgraded agent's new defaults apply without a reinstall).
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import logging
import os
import shlex
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from string import Template

from rock_core._errors import BadRequest, NotFound, RockError

from ._version import AGENT_VERSION

SERVICE = "rock-agent"
UNIT_NAME = f"{SERVICE}.service"
DEFAULT_SOCKET = "/run/rock-agent/agent.sock"
UNIT_DIR = Path("/etc/systemd/system")
# Where systemd reads system units from: only a unit written there can be enabled.
SYSTEM_UNIT_DIRS = (UNIT_DIR, Path("/run/systemd/system"), Path("/usr/lib/systemd/system"))
MARKER = "# Written by `rock-agent install`"
HOME_DIRS = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FOLLOW_UP = f"systemctl daemon-reload && systemctl enable --now {SERVICE}"

log = logging.getLogger("rock_agent")


def group_id(name: str) -> int:
    """The id of the group `name`; a clear `BadRequest` when this host has no such group."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise BadRequest(
            f"no group named {name!r} on this host (for --socket-group); "
            f"create it first: groupadd {name}"
        ) from None


def notify_ready() -> None:
    """Tell systemd (Type=notify) that the socket is listening; a no-op outside systemd.

    `systemctl start` then returns only once clients can connect.
    """
    target = os.environ.pop("NOTIFY_SOCKET", "")  # meant for us, not for anything we start
    if not target:
        return
    address = "\0" + target[1:] if target.startswith("@") else target
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.sendto(b"READY=1", address)
    except OSError as exc:
        # Serving matters more: systemd itself reports a unit that never said ready.
        log.warning("could not tell systemd the agent is ready (%s): %s", target, exc)


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


# ---------------------------------------------------------------------- the service manager


@dataclass(frozen=True)
class Systemd:
    """This machine's service manager: whether systemd runs as PID 1, and how to call it."""

    booted: bool
    pid1: str
    systemctl: tuple[str, ...] = ("systemctl",)
    unit_dirs: tuple[Path, ...] = SYSTEM_UNIT_DIRS

    @classmethod
    def detect(cls) -> Systemd:
        """Look at this machine (the same test as sd_booted(3))."""
        try:
            pid1 = Path("/proc/1/comm").read_text().strip()
        except OSError:
            pid1 = "unknown"
        return cls(booted=Path("/run/systemd/system").is_dir(), pid1=pid1)

    def run(self, *args: str) -> None:
        """Run systemctl; `RockError` with its own words when it fails."""
        argv = [*self.systemctl, *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RockError(f"`{shlex.join(['systemctl', *args])}` could not run: {exc}") from exc
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()
            raise RockError(
                f"`{shlex.join(['systemctl', *args])}` failed (exit {done.returncode}): {said}"
            )

    def check(self, *args: str) -> bool:
        """Whether a quiet systemctl query (`is-active`, `is-enabled`) answers yes."""
        argv = [*self.systemctl, *args, "--quiet", SERVICE]
        return subprocess.run(argv, capture_output=True, timeout=120).returncode == 0

    def not_running_note(self) -> str:
        """Why nothing was started here, and what to run on a host where systemd runs."""
        return (
            f"systemd is not running as PID 1 on this machine (PID 1 is {self.pid1!r}), so "
            f"nothing was started. On a host booted with systemd, run:\n    {FOLLOW_UP}"
        )


def unit_path(output: str | None) -> Path:
    """Where the unit goes: `output` (a directory, or a file name), or the system's unit dir."""
    if output is None:
        return UNIT_DIR / UNIT_NAME
    path = Path(output)
    return path / UNIT_NAME if path.is_dir() else path


def install(text: str, target: Path, *, now: bool, systemd: Systemd) -> list[str]:
    """Write the unit to `target` (replacing an older one atomically); optionally start it.

    Returns the lines to tell the operator.
    """
    managed = target.parent in systemd.unit_dirs
    if now and not systemd.booted:
        raise BadRequest(f"cannot --now: {systemd.not_running_note()}")
    if now and not managed:
        raise BadRequest(
            f"cannot --now: systemd does not read units from {target.parent} "
            f"(it reads {', '.join(str(d) for d in systemd.unit_dirs)})"
        )
    existed = os.path.lexists(target)  # False also when we may not look: writing will say
    _write_atomically(target, text)
    lines = [f"{'updated' if existed else 'wrote'} {target}"]
    if now:
        systemd.run("daemon-reload")
        systemd.run("enable", SERVICE)
        # Restart, not start: an agent already running picks up its new options.
        systemd.run("restart", SERVICE)
        lines.append(f"started {SERVICE}: see it with `systemctl status {SERVICE}`")
    elif not managed:
        lines.append(f"systemd does not read units from {target.parent}; copy it to {UNIT_DIR}")
    elif systemd.booted:
        restart = f" && systemctl restart {SERVICE}" if existed else ""
        lines.append(f"start it with:\n    {FOLLOW_UP}{restart}\n(or run install with --now)")
    else:
        lines.append(systemd.not_running_note())
    return lines


def uninstall(target: Path, *, now: bool, systemd: Systemd) -> list[str]:
    """Remove a unit this command wrote; with `now`, stop and disable the service first.

    Returns the lines to tell the operator.
    """
    try:
        text = target.read_text()
    except FileNotFoundError:
        raise NotFound(f"no unit file at {target}: nothing to uninstall") from None
    except OSError as exc:
        raise BadRequest(f"cannot read {target}: {exc.strerror}") from exc
    if not text.startswith(MARKER):
        raise BadRequest(f"{target} was not written by `rock-agent install`; leaving it alone")
    managed = target.parent in systemd.unit_dirs
    if now and not systemd.booted:
        raise BadRequest(f"cannot --now: {systemd.not_running_note()}")
    if systemd.booted and managed:
        if now:
            systemd.run("disable", "--now", SERVICE)
        else:
            state = [what for what in ("active", "enabled") if systemd.check(f"is-{what}")]
            if state:
                raise BadRequest(
                    f"{SERVICE} is still {' and '.join(state)}: stop and disable it first "
                    f"(systemctl disable --now {SERVICE}), or pass --now"
                )
    try:
        target.unlink()
    except OSError as exc:
        raise BadRequest(f"cannot remove {target}: {exc.strerror}{_root_hint(exc)}") from exc
    lines = [f"removed {target}"]
    if systemd.booted and managed:
        systemd.run("daemon-reload")
    elif managed:
        lines.append(
            f"systemd is not running as PID 1 on this machine (PID 1 is {systemd.pid1!r}). "
            f"On a host booted with systemd, stop and disable the service before uninstalling "
            f"(systemctl disable --now {SERVICE}) and reload after it (systemctl daemon-reload)."
        )
    lines.append(
        "sandbox containers are left to their owners; list leftovers with:\n"
        "    docker ps -a --filter label=rock.managed=1"
    )
    return lines


def _write_atomically(target: Path, text: str) -> None:
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise BadRequest(f"cannot write {target}: {exc.strerror}{_root_hint(exc)}") from exc
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise BadRequest(f"cannot write {target}: {exc.strerror}{_root_hint(exc)}") from exc


def _root_hint(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return " (run as root, or write elsewhere with --output or --print)"
    return ""


# ---------------------------------------------------------------------- command line


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `install` and `uninstall` to the `rock-agent` command line."""
    inst = commands.add_parser(
        "install", help="write the systemd unit that runs this agent as a service"
    )
    inst.add_argument("--socket", metavar="PATH", default=DEFAULT_SOCKET, help="under /run")
    inst.add_argument(
        "--socket-group",
        metavar="GROUP",
        help="let this group connect (socket mode 0660; default: root only, 0600)",
    )
    inst.add_argument("--host-id", help="default: the host name when the agent starts")
    inst.add_argument("--lease", type=float, metavar="SECONDS", help="default: the agent's (60)")
    inst.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper, help="default: INFO")
    inst.add_argument(
        "--executable",
        metavar="PATH",
        help="the rock-agent program to run (default: this Python with -m rock_agent)",
    )
    where = inst.add_mutually_exclusive_group()
    where.add_argument("--output", metavar="PATH", help=f"a directory or file (default {UNIT_DIR})")
    where.add_argument("--print", action="store_true", help="print the unit instead")
    inst.add_argument("--now", action="store_true", help="then reload systemd and start it")
    uninst = commands.add_parser("uninstall", help="remove the unit that install wrote")
    uninst.add_argument("--output", metavar="PATH", help="where install wrote it")
    uninst.add_argument("--now", action="store_true", help="stop and disable the service first")


def run_command(args: argparse.Namespace) -> int:
    """Run `install` or `uninstall`; errors are printed, not raised."""
    try:
        if args.command == "install":
            config = UnitConfig(
                command=(args.executable,) if args.executable else default_command(),
                socket=args.socket,
                socket_group=args.socket_group,
                host_id=args.host_id,
                lease=args.lease,
                log_level=args.log_level,
            )
            text = render_unit(config)
            if args.print:
                if args.now:
                    raise BadRequest("--now needs the unit written, not printed")
                sys.stdout.write(text)
                return 0
            lines = install(text, unit_path(args.output), now=args.now, systemd=Systemd.detect())
        else:
            lines = uninstall(unit_path(args.output), now=args.now, systemd=Systemd.detect())
    except RockError as exc:
        print(f"rock-agent {args.command}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


__all__ = [
    "DEFAULT_SOCKET",
    "UNIT_NAME",
    "Systemd",
    "UnitConfig",
    "add_commands",
    "group_id",
    "install",
    "notify_ready",
    "render_unit",
    "run_command",
    "uninstall",
    "unit_path",
]
