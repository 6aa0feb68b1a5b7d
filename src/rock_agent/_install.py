"""`rock-agent install` and `uninstall`: put the systemd unit (`_unit`) in place, or take it
away, and tell systemd; and telling systemd a serving agent is ready.

Rules:
- A unit is written atomically (a temporary file renamed over it), so systemd never reads half
  of one; only a unit `install` wrote (it starts with `MARKER`) is ever removed.
- Without systemd as PID 1 nothing is started: the operator is told what to run on a host
  where it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rock_core._errors import BadRequest, NotFound, RockError

from ._unit import (
    DEFAULT_SOCKET,
    LOG_LEVELS,
    MARKER,
    SERVICE,
    UNIT_NAME,
    UnitConfig,
    default_command,
    render_unit,
)

UNIT_DIR = Path("/etc/systemd/system")
# Where systemd reads system units from: only a unit written there can be enabled.
SYSTEM_UNIT_DIRS = (UNIT_DIR, Path("/run/systemd/system"), Path("/usr/lib/systemd/system"))
FOLLOW_UP = f"systemctl daemon-reload && systemctl enable --now {SERVICE}"

log = logging.getLogger("rock_agent")


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
    "Systemd",
    "add_commands",
    "install",
    "notify_ready",
    "run_command",
    "uninstall",
    "unit_path",
]
