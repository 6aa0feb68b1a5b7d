"""`rock-agent install` / `uninstall` and `serve --socket-group`, checked for real.

Units are checked with the real `systemd-analyze verify`, made strict: it must exit 0 and say
nothing (it exits 0 on settings it ignores). The serve tests run the unit's own ExecStart
against the real engine and check the socket's mode, group and who may connect.
"""

from __future__ import annotations

import contextlib
import grp
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from rock_agent import _install, _unit
from rock_agent._install import Systemd, UnitConfig, install, render_unit, uninstall
from rock_core._errors import BadRequest, NotFound, RockError
from rock_core._hosts import open_host
from rock_core._owner import local_owner

NOBODY = 65534
NOT_BOOTED = Systemd(booted=False, pid1="process_api")


def agent(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rock_agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def verify(unit: Path) -> tuple[int, str]:
    """`systemd-analyze verify`: its exit code and everything it printed."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing: run `bash scripts/setup-host.sh` first")
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    return done.returncode, (done.stdout + done.stderr).strip()


def assert_verifies(unit: Path) -> None:
    code, said = verify(unit)
    assert (code, said) == (0, ""), f"systemd-analyze verify {unit}:\n{said}"


def write_unit(folder: Path, text: str) -> Path:
    path = folder / _install.UNIT_NAME
    path.write_text(text)
    return path


def directives(text: str) -> dict[str, str]:
    """The unit's settings (the last value of each key); comments left out."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found[key] = value
    return found


@contextlib.contextmanager
def temp_group() -> Iterator[str]:
    name = f"rocktest{secrets.token_hex(3)}"
    subprocess.run(["groupadd", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["groupdel", name], check=True, capture_output=True)


@contextlib.contextmanager
def acting_as(uid: int, gid: int) -> Iterator[None]:
    """Run file system checks as another user (effective ids only; root again afterwards)."""
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


# ---------------------------------------------------------------------- rendering + verify


def test_default_unit_verifies_and_is_owner_only(tmp_path: Path) -> None:
    text = render_unit(UnitConfig())
    assert_verifies(write_unit(tmp_path, text))
    unit = directives(text)
    assert unit["ExecStart"] == (
        f"{sys.executable} -m rock_agent serve --socket /run/rock-agent/agent.sock"
    )
    assert unit["RuntimeDirectory"] == "rock-agent"
    assert unit["RuntimeDirectoryMode"] == "0700"
    assert unit["CapabilityBoundingSet"] == "CAP_KILL"
    assert unit["Restart"] == "on-failure"
    assert unit["RestrictAddressFamilies"] == "AF_UNIX"
    assert unit["ProtectSystem"] == "strict"
    # The agent must see other processes' /proc entries: nothing may hide them.
    assert "ProtectProc" not in unit and "ProcSubset" not in unit
    assert "User" not in unit and "DynamicUser" not in unit
    assert text.startswith(_install.MARKER)


def test_every_option_lands_in_a_unit_that_verifies(tmp_path: Path) -> None:
    # An interpreter whose path needs quoting, and values that systemd would expand.
    odd = tmp_path / "python env"
    odd.mkdir()
    (odd / "python").symlink_to(sys.executable)
    config = UnitConfig(
        command=(str(odd / "python"), "-m", "rock_agent"),
        socket="/run/rock/agents/main.sock",
        socket_group="daemon",
        host_id="gpu 01 %h $HOME",
        lease=90,
        log_level="debug",
    )
    text = render_unit(config)
    assert_verifies(write_unit(tmp_path, text))
    unit = directives(text)
    assert unit["ExecStart"] == (
        f'"{odd}/python" -m rock_agent serve --socket /run/rock/agents/main.sock '
        '--socket-group daemon --host-id "gpu 01 %%h $$HOME" --lease 90 --log-level DEBUG'
    )
    assert unit["RuntimeDirectory"] == "rock/agents"
    assert unit["RuntimeDirectoryMode"] == "0711"
    assert unit["CapabilityBoundingSet"] == "CAP_KILL CAP_CHOWN"


def test_home_directories_are_hidden_unless_the_agent_lives_there(tmp_path: Path) -> None:
    system_python = UnitConfig(command=("/usr/bin/python3", "-m", "rock_agent"))
    assert directives(render_unit(system_python))["ProtectHome"] == "yes"
    # A console script whose interpreter is a Python in root's home (pyenv, a venv there).
    script = tmp_path / "rock-agent"
    script.write_text(f"#!{sys.executable}\nimport sys\n")
    script.chmod(0o755)
    unit = directives(render_unit(UnitConfig(command=(str(script),))))
    # The interpreter counts where it really is: a venv's python may link into root's home.
    homes = {sys.executable, str(Path(sys.executable).resolve())}
    in_home = any(path.startswith(("/root/", "/home/")) for path in homes)
    assert unit["ProtectHome"] == ("read-only" if in_home else "yes")
    assert _unit._home_paths(("/home/rl/venv/bin/python",)) == ["/home/rl/venv/bin/python"]


def test_verify_is_strict_a_bad_exec_start_fails(tmp_path: Path) -> None:
    text = render_unit(UnitConfig())
    good = directives(text)["ExecStart"]
    broken = text.replace(good, "/no/such/python -m rock_agent serve --socket /run/x/a.sock")
    code, said = verify(write_unit(tmp_path, broken))
    assert code != 0
    assert "Command /no/such/python is not executable" in said


def test_verify_is_strict_an_ignored_setting_fails(tmp_path: Path) -> None:
    # systemd-analyze exits 0 here; the strict check still refuses the unit.
    broken = render_unit(UnitConfig()).replace("PrivateTmp=yes", "PrivateTnp=yes")
    code, said = verify(write_unit(tmp_path, broken))
    assert code == 0
    assert "Unknown key 'PrivateTnp' in section [Service], ignoring" in said
    with pytest.raises(AssertionError, match="PrivateTnp"):
        assert_verifies(tmp_path / _install.UNIT_NAME)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (UnitConfig(socket="/tmp/agent.sock"), "socket '/tmp/agent.sock' must be a path in a"),
        (UnitConfig(socket="/run/agent.sock"), "socket '/run/agent.sock' must be a path in a"),
        (UnitConfig(socket="run/x/a.sock"), "socket 'run/x/a.sock' must be a path in a"),
        (UnitConfig(socket="/run/x/../a.sock"), "must be a path in a directory under /run"),
        (UnitConfig(socket="/run/a b/s.sock"), "socket directory /run/a b may hold only"),
        (UnitConfig(command=("python3", "-m", "rock_agent")), "must be an absolute path"),
        (UnitConfig(command=()), "the agent command is empty"),
        (UnitConfig(socket_group="no-such-group-x"), "no group named 'no-such-group-x'"),
        (UnitConfig(host_id="a\nb"), "host id 'a\\nb' must be non-empty printable text"),
        (UnitConfig(lease=0), "lease must be a positive number of seconds, got 0"),
        (UnitConfig(log_level="LOUD"), "log level 'LOUD' is not one of DEBUG, INFO"),
    ],
)
def test_bad_values_are_refused(config: UnitConfig, message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        render_unit(config)


def test_a_program_that_cannot_run_is_refused(tmp_path: Path) -> None:
    text_file = tmp_path / "rock-agent"
    text_file.write_text("not a program")
    for program in (text_file, tmp_path, tmp_path / "missing"):
        with pytest.raises(BadRequest, match=re.escape(f"{program} is not an executable file")):
            render_unit(UnitConfig(command=(str(program), "serve")))


# ---------------------------------------------------------------------- install / uninstall


def test_install_and_uninstall_in_a_folder(tmp_path: Path) -> None:
    target = tmp_path / _install.UNIT_NAME
    text = render_unit(UnitConfig())
    lines = install(text, target, now=False, systemd=NOT_BOOTED)
    assert lines == [
        f"wrote {target}",
        f"systemd does not read units from {tmp_path}; copy it to /etc/systemd/system",
    ]
    assert target.read_text() == text
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert install(text, target, now=False, systemd=NOT_BOOTED)[0] == f"updated {target}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [_install.UNIT_NAME]  # no temp left
    lines = uninstall(target, now=False, systemd=NOT_BOOTED)
    assert lines[0] == f"removed {target}"
    assert "docker ps -a --filter label=rock.managed=1" in lines[-1]
    assert not target.exists()
    with pytest.raises(NotFound, match=f"no unit file at {target}: nothing to uninstall"):
        uninstall(target, now=False, systemd=NOT_BOOTED)


def test_uninstall_leaves_a_foreign_unit_alone(tmp_path: Path) -> None:
    target = write_unit(tmp_path, "[Service]\nExecStart=/bin/true\n")
    with pytest.raises(BadRequest, match="was not written by `rock-agent install`; leaving it"):
        uninstall(target, now=False, systemd=NOT_BOOTED)
    assert target.exists()


def test_install_into_a_system_folder_without_systemd_says_what_to_run(tmp_path: Path) -> None:
    here = Systemd(booted=False, pid1="process_api", unit_dirs=(tmp_path,))
    lines = install(
        render_unit(UnitConfig()), tmp_path / _install.UNIT_NAME, now=False, systemd=here
    )
    assert "systemd is not running as PID 1 on this machine (PID 1 is 'process_api')" in lines[1]
    assert lines[1].endswith("systemctl daemon-reload && systemctl enable --now rock-agent")
    with pytest.raises(BadRequest, match="cannot --now: systemd is not running as PID 1"):
        install("x", tmp_path / "other.service", now=True, systemd=here)
    assert not (tmp_path / "other.service").exists()


def test_unwritable_output_folder() -> None:
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)  # root's folder: others may look, not write
        target = folder / _install.UNIT_NAME
        with acting_as(NOBODY, NOBODY), pytest.raises(BadRequest) as caught:
            install("text", target, now=False, systemd=NOT_BOOTED)
        assert str(caught.value) == (
            f"cannot write {target}: Permission denied "
            "(run as root, or write elsewhere with --output or --print)"
        )
        assert list(folder.iterdir()) == []
    finally:
        folder.rmdir()
    missing = Path("/no/such/dir/x.service")
    with pytest.raises(BadRequest, match=re.escape(f"cannot write {missing}: No such file")):
        install("text", missing, now=False, systemd=NOT_BOOTED)


@pytest.fixture
def systemctl(tmp_path: Path) -> tuple[Systemd, Path]:
    """systemd as PID 1 cannot run here: a stand-in systemctl that logs its arguments."""
    log = tmp_path / "calls"
    program = tmp_path / "systemctl"
    program.write_text(
        f'#!/bin/sh\necho "$*" >>{log}\n'
        f'case "$*" in *is-active*) exit ${{ACTIVE:-3}};; *is-enabled*) exit 1;; esac\n'
        f'case "$*" in *restart*) [ -n "$FAIL" ] && {{ echo "$FAIL" >&2; exit 5; }};; esac\n'
        "exit 0\n"
    )
    program.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    return Systemd(booted=True, pid1="systemd", systemctl=(str(program),), unit_dirs=(units,)), log


def test_now_reloads_enables_and_restarts(
    systemctl: tuple[Systemd, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    systemd, log = systemctl
    target = systemd.unit_dirs[0] / _install.UNIT_NAME
    lines = install(render_unit(UnitConfig()), target, now=True, systemd=systemd)
    assert lines[1] == "started rock-agent: see it with `systemctl status rock-agent`"
    assert log.read_text().splitlines() == [
        "daemon-reload",
        "enable rock-agent",
        "restart rock-agent",
    ]
    log.unlink()
    monkeypatch.setenv("FAIL", "Job for rock-agent.service failed.")
    with pytest.raises(RockError, match=r"`systemctl restart rock-agent` failed \(exit 5\): Job"):
        install(render_unit(UnitConfig()), target, now=True, systemd=systemd)


def test_uninstall_refuses_a_running_service_without_now(
    systemctl: tuple[Systemd, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    systemd, log = systemctl
    target = systemd.unit_dirs[0] / _install.UNIT_NAME
    install(render_unit(UnitConfig()), target, now=False, systemd=systemd)
    monkeypatch.setenv("ACTIVE", "0")
    with pytest.raises(BadRequest, match=r"rock-agent is still active: stop and disable it first"):
        uninstall(target, now=False, systemd=systemd)
    assert target.exists()
    log.unlink()
    assert uninstall(target, now=True, systemd=systemd)[0] == f"removed {target}"
    assert log.read_text().splitlines() == ["disable --now rock-agent", "daemon-reload"]
    assert not target.exists()


# ---------------------------------------------------------------------- the command line


def test_cli_print_install_uninstall(tmp_path: Path) -> None:
    printed = agent("install", "--print", "--lease", "75")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == render_unit(UnitConfig(lease=75))
    done = agent("install", "--output", str(tmp_path), "--log-level", "warning")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {tmp_path / _install.UNIT_NAME}\n")
    assert "--log-level WARNING" in (tmp_path / _install.UNIT_NAME).read_text()
    done = agent("uninstall", "--output", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"removed {tmp_path / _install.UNIT_NAME}\n")
    assert list(tmp_path.iterdir()) == []


def test_cli_errors(tmp_path: Path) -> None:
    done = agent("install", "--output", str(tmp_path), "--socket-group", "no-such-group-x")
    assert done.returncode == 1
    assert done.stderr.startswith("rock-agent install: no group named 'no-such-group-x'")
    done = agent("install", "--print", "--now")
    assert (done.returncode, done.stderr) == (
        1,
        "rock-agent install: --now needs the unit written, not printed\n",
    )
    done = agent("uninstall", "--output", str(tmp_path))
    assert done.returncode == 1
    assert "rock-agent uninstall: no unit file at" in done.stderr
    done = agent("serve", "--socket", str(tmp_path / "a.sock"), "--socket-group", "no-such-x")
    assert done.returncode == 2
    assert done.stderr.startswith("rock-agent serve: no group named 'no-such-x' on this host")
    done = agent("serve", "--stdio", "--socket-group", "daemon")
    assert (done.returncode, done.stderr) == (
        2,
        "rock-agent serve: --socket-group needs --socket\n",
    )
    assert not (tmp_path / "a.sock").exists()


# ---------------------------------------------------------------------- the unit's agent, run


@contextlib.contextmanager
def unit_agent(config: UnitConfig, tmp_path: Path) -> Iterator[Path]:
    """Run a rendered unit's ExecStart as systemd would: its runtime directory made first, and
    started once it says READY=1 on the notify socket (Type=notify)."""
    unit = directives(render_unit(config))
    assert unit["Type"] == "notify"
    runtime = Path("/run") / unit["RuntimeDirectory"]
    runtime.mkdir()
    runtime.chmod(int(unit["RuntimeDirectoryMode"], 8))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")}
    process = subprocess.Popen(
        shlex.split(unit["ExecStart"]), env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        try:
            said = notify.recv(100)
        except TimeoutError:
            process.kill()
            pytest.fail(f"the agent never said it was ready: {process.communicate()[1]}")
        assert said == b"READY=1"
        yield Path(config.socket)
    finally:
        notify.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        finally:
            process.kill()
            shutil.rmtree(runtime, ignore_errors=True)
    assert process.returncode == 0, process.communicate()[1]


def connects(path: Path) -> bool | str:
    """True when a connect succeeds; the error's name when it does not."""
    with socket.socket(socket.AF_UNIX) as client:
        try:
            client.connect(str(path))
        except OSError as exc:
            return type(exc).__name__
    return True


async def handshake_host_id(path: Path) -> str:
    async with open_host(f"unix://{path}", owner=local_owner()) as conn:
        return conn.welcome.host_id


@pytest.mark.docker
def test_the_units_agent_gives_its_socket_to_the_group(docker_engine: None, tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    with temp_group() as group:
        gid = grp.getgrnam(group).gr_gid
        config = UnitConfig(
            socket=f"/run/rock-test-{tag}/agent.sock",
            socket_group=group,
            host_id=f"install-test-{tag}",
            lease=30,
        )
        with unit_agent(config, tmp_path) as sock:
            info = sock.stat()
            assert stat.S_ISSOCK(info.st_mode)
            assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o660, 0, gid)
            with acting_as(NOBODY, gid):
                assert connects(sock) is True  # a group member, through the 0711 directory
            with acting_as(NOBODY, NOBODY):
                assert connects(sock) == "PermissionError"
            assert anyio.run(handshake_host_id, sock) == f"install-test-{tag}"


@pytest.mark.docker
def test_the_default_units_agent_is_owner_only(docker_engine: None, tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    config = UnitConfig(socket=f"/run/rock-test-{tag}/agent.sock", host_id=f"install-test-{tag}")
    with unit_agent(config, tmp_path) as sock:
        info = sock.stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o600, 0, 0)
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        with acting_as(NOBODY, 0):  # even root's group gets nothing
            assert connects(sock) == "PermissionError"
        assert anyio.run(handshake_host_id, sock) == f"install-test-{tag}"
