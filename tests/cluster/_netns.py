"""Hosts for multi-host tests, made from network namespaces on this machine.

`open_netns_hosts(n)` builds `n` hosts and always tears them down. Each host is a network
namespace joined to the root namespace by a veth pair, with its own address and its own OpenSSH
server on port 22 of that address, so a test reaches it exactly as it would reach a remote
machine: by address (``10.231.0.11``) or by alias (``ssh -F cluster.ssh_config h1``), with a
generated client key and host keys verified against a generated ``known_hosts``.

All namespaces share this machine's file system and Docker engine. What keeps the hosts apart is
the environment their sshd gives every session (``SetEnv``): ``ROCK_AGENT_HOST_ID`` (unique per
run, so concurrent runs on one engine cannot adopt each other's containers) and
``ROCK_AGENT_SOCKET`` (a socket path in the host's own directory).

Addressing: one point-to-point /32 per veth; the root side is ``<subnet>.1`` on every veth and
host ``i`` is ``<subnet>.(10 + i)``. An ``unreachable`` route for the whole subnet in the root
namespace claims it (atomically: a concurrent run gets "File exists" and takes the next /24) and
keeps traffic for a host whose link is down from leaving by the default route. So after
`NetnsHost.link_down` new connections fail at once with "No route to host", and the packets of
open connections are lost until `NetnsHost.link_up` (TCP then retransmits: they survive a short
outage, as over a real network).

Everything one run makes is listed in ``<workdir>/cluster.json`` before it is made;
`sweep_stale` (called by every new run) removes what runs of dead processes left behind. Plain
synchronous code (subprocess calls to ``ip`` and ``sshd``): usable from pytest fixtures of either
async backend and from bench scripts. Needs root.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from rock_agent import _procs

SSHD = "/usr/sbin/sshd"
SUBNET_ENV = "ROCK_TEST_NETNS_SUBNET"
AUTO_POOL = ipaddress.IPv4Network("10.231.0.0/16")
HOST_OFFSET = 10
WORKDIR_PREFIX = "rock-netns-"
STATE_FILE = "cluster.json"
HOST_ID_ENV = "ROCK_AGENT_HOST_ID"
SOCKET_ENV = "ROCK_AGENT_SOCKET"

_NETNS_NAME = re.compile(r"^rock-(\d+)-([a-z0-9_]+)-h\d+$")
_SSHD_PROCESS = r"^(\S*/)?sshd\b"
_COMMAND_TIMEOUT = 30.0
_KILL_WAIT = 5.0


class NetnsError(RuntimeError):
    """A namespace host could not be made, changed or torn down; the message says why."""


# ------------------------------------------------------------------ small helpers


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=_COMMAND_TIMEOUT)
    if check and result.returncode != 0:
        raise NetnsError(
            f"`ip {' '.join(args)}` failed (exit {result.returncode}): {result.stderr.strip()}"
        )
    return result


def _gone(stderr: str) -> bool:
    """Whether an `ip` error only says the thing to remove is already gone."""
    return any(
        marker in stderr
        for marker in ("No such file", "Cannot find device", "No such process", "not found")
    )


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


def _namespace_pids(namespace: str) -> list[int]:
    """Live processes in `namespace` ([] when the namespace is gone)."""
    result = _ip("netns", "pids", namespace, check=False)
    if result.returncode != 0:
        if _gone(result.stderr):
            return []
        raise NetnsError(f"cannot list the processes of namespace {namespace}: {result.stderr}")
    return [pid for pid in map(int, result.stdout.split()) if _procs.alive(pid)]


def _kill_all_in(namespace: str) -> None:
    """SIGKILL every process in `namespace` until none is left (forks included)."""
    deadline = time.monotonic() + _KILL_WAIT
    while pids := _namespace_pids(namespace):
        if time.monotonic() > deadline:
            raise NetnsError(f"processes {pids} in namespace {namespace} survived SIGKILL")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _wait_gone(pids: Sequence[int], what: str) -> None:
    deadline = time.monotonic() + _KILL_WAIT
    while any(_procs.alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise NetnsError(f"{what} (pids {list(pids)}) still running after {_KILL_WAIT} s")
        time.sleep(0.01)


def _veth_name(namespace: str) -> str:
    # Interface names have at most 15 characters; a digest of the unique namespace name fits.
    return "rk" + hashlib.blake2s(namespace.encode(), digest_size=6).hexdigest()


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=_COMMAND_TIMEOUT,
    )


def known_hosts_entry(address: str, port: int, public_key: str) -> str:
    """One ``known_hosts`` line in OpenSSH's form: ``addr`` on port 22, else ``[addr]:port``."""
    key_type, key_data = public_key.split()[:2]
    host = address if port == 22 else f"[{address}]:{port}"
    return f"{host} {key_type} {key_data}"


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


# ------------------------------------------------------------------ one host


class NetnsHost:
    """One "host": a network namespace with its own address, sshd and agent identity."""

    def __init__(
        self,
        *,
        alias: str,
        namespace: str,
        address: str,
        gateway: str,
        workdir: Path,
        host_key: Path,
        client_key: Path,
        known_hosts: Path,
        ssh_config: Path,
        authorized_keys: Path,
    ) -> None:
        self.alias = alias
        """Short name in the generated ssh config (``h1``)."""
        self.name = namespace
        """The namespace's name, unique per run (``rock-<pid>-<random>-h1``)."""
        self.address = address
        self.gateway = gateway
        """The root namespace's address on this host's link."""
        self.port = 22
        self.user = "root"
        self.veth = _veth_name(namespace)
        """The root-side end of the veth pair (what `link_down` takes down)."""
        self.workdir = workdir
        self.host_key = host_key
        self.client_key = client_key
        self.known_hosts = known_hosts
        self.ssh_config = ssh_config
        self.authorized_keys = authorized_keys
        self.sshd_config = workdir / "sshd_config"
        self.sshd_pid_file = workdir / "sshd.pid"
        self.sshd_log = workdir / "sshd.log"
        self.agent_socket = workdir / "agent.sock"
        self._spawned: list[subprocess.Popen[bytes]] = []

    def __repr__(self) -> str:
        return f"NetnsHost({self.alias}, {self.address}, namespace={self.name})"

    @property
    def host_id(self) -> str:
        """The agent identity sessions on this host see (unique across runs)."""
        return self.name

    @property
    def env(self) -> dict[str, str]:
        """The variables sshd sets for every session here; `run`/`spawn` set them too."""
        return {HOST_ID_ENV: self.host_id, SOCKET_ENV: str(self.agent_socket)}

    @property
    def url(self) -> str:
        """``ssh://root@address:22?socket=...``, the form `open_cluster` takes.

        The agent socket is named: every namespace shares this machine's file system, so the
        default path (``/run/rock-agent/agent.sock``) would be one socket for all hosts.
        """
        return f"ssh://{self.user}@{self.address}:{self.port}?socket={self.agent_socket}"

    # -------------------------------------------------------------- processes

    def _argv(self, cmd: Sequence[str] | str) -> list[str]:
        command = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return ["ip", "netns", "exec", self.name, *command]

    def _env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        return {**os.environ, **self.env, **(env or {})}

    def run(
        self,
        cmd: Sequence[str] | str,
        *,
        check: bool = True,
        timeout: float = _COMMAND_TIMEOUT,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` (argv, or a string for ``sh -c``) inside the namespace; capture its output.

        With `check`, a non-zero exit raises `NetnsError` with the exit code and stderr.
        """
        result = subprocess.run(
            self._argv(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=self._env(env),
        )
        if check and result.returncode != 0:
            raise NetnsError(
                f"{cmd!r} on {self.alias} failed (exit {result.returncode}): "
                f"{result.stderr.strip()}"
            )
        return result

    def spawn(
        self,
        cmd: Sequence[str] | str,
        *,
        env: Mapping[str, str] | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        stderr: int | IO[Any] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `cmd` in the background inside the namespace (an agent, a server).

        The returned process is `cmd` itself (``ip netns exec`` execs it), already running in
        the namespace when this returns. Teardown kills and reaps it if the test has not.
        """
        argv = self._argv(cmd)
        proc = subprocess.Popen(argv, env=self._env(env), stdin=stdin, stdout=stdout, stderr=stderr)
        self._spawned = [p for p in self._spawned if p.poll() is None]
        self._spawned.append(proc)
        launcher = " ".join(argv[:4])
        deadline = time.monotonic() + _KILL_WAIT
        # An empty or unreadable command line is a process between fork and exec: wait on.
        while proc.poll() is None and (
            not (_cmdline(proc.pid) or "") or (_cmdline(proc.pid) or "").startswith(launcher)
        ):
            if time.monotonic() > deadline:
                raise NetnsError(f"{cmd!r} on {self.alias}: `{launcher}` did not exec it")
            time.sleep(0.001)
        return proc

    def pids(self) -> list[int]:
        """Every live process in this namespace."""
        return _namespace_pids(self.name)

    def pids_of(self, pattern: str) -> list[int]:
        """Processes in this namespace whose command line (space-joined) matches `pattern`."""
        regex = re.compile(pattern)
        found = []
        for pid in self.pids():
            cmdline = _cmdline(pid)
            if cmdline is not None and regex.search(cmdline):
                found.append(pid)
        return found

    def kill_processes(self, pattern: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to this namespace's processes matching `pattern`; return how many got it.

        With SIGKILL, waits until they are gone.
        """
        sent = []
        for pid in self.pids_of(pattern):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                sent.append(pid)
        if sig == signal.SIGKILL:
            _wait_gone(sent, f"processes matching {pattern!r} on {self.alias}")
        return len(sent)

    # -------------------------------------------------------------- the link

    def link_down(self) -> None:
        """Cut this host off: new connections fail, packets of open ones are lost."""
        _ip("link", "set", "dev", self.veth, "down")

    def link_up(self) -> None:
        """Restore the link (and the route to this host) that `link_down` cut."""
        _ip("link", "set", "dev", self.veth, "up")

    def link_is_up(self) -> bool:
        """Whether the root side of this host's link is administratively up."""
        flags = _ip("-o", "link", "show", "dev", self.veth).stdout.split("<", 1)[1].split(">")[0]
        return "UP" in flags.split(",")

    # -------------------------------------------------------------- sshd

    def write_sshd_config(self) -> None:
        """Write this host's sshd_config (called once by the cluster; rewrite after edits)."""
        env = " ".join(f"{key}={value}" for key, value in self.env.items())
        self.sshd_config.write_text(
            f"""# sshd of test host {self.alias} (namespace {self.name})
Port {self.port}
ListenAddress {self.address}
HostKey {self.host_key}
AuthorizedKeysFile {self.authorized_keys}
PidFile {self.sshd_pid_file}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
SetEnv {env}
"""
        )

    def sshd_pid(self) -> int | None:
        """The pid of this host's listening sshd, or None when it is not running."""
        try:
            pid = int(self.sshd_pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _procs.alive(pid) and pid in self.pids() else None

    def start_sshd(self) -> int:
        """Start this host's sshd; it listens when this returns. Returns its pid."""
        running = self.sshd_pid()
        if running is not None:
            raise NetnsError(f"sshd of {self.alias} is already running (pid {running})")
        self.sshd_pid_file.unlink(missing_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation dir
        # sshd binds its listener before it daemonizes, so it listens once this returns.
        result = subprocess.run(
            self._argv([SSHD, "-f", str(self.sshd_config), "-E", str(self.sshd_log)]),
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
        )
        if result.returncode != 0:
            log = self.sshd_log.read_text()[-2000:] if self.sshd_log.exists() else ""
            raise NetnsError(
                f"sshd of {self.alias} did not start (exit {result.returncode}): "
                f"{result.stderr.strip()} {log.strip()}"
            )
        deadline = time.monotonic() + _KILL_WAIT
        while (pid := self.sshd_pid()) is None:
            if time.monotonic() > deadline:
                raise NetnsError(f"sshd of {self.alias} wrote no pid file {self.sshd_pid_file}")
            time.sleep(0.005)
        return pid

    def kill_sshd(self, sig: int = signal.SIGKILL, *, sessions: bool = True) -> None:
        """Stop this host's sshd with `sig`; with `sessions`, its open connections too.

        Without `sessions` only the listener goes: open connections live on, new ones are
        refused (what restarting sshd on a real host does).
        """
        listener = self.sshd_pid()
        targets = self.pids_of(_SSHD_PROCESS) if sessions else []
        if listener is not None and listener not in targets:
            targets.append(listener)
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        _wait_gone(targets, f"sshd of {self.alias}")
        self.sshd_pid_file.unlink(missing_ok=True)

    # -------------------------------------------------------------- build and teardown

    def create(self) -> None:
        """Make the namespace, its link and addresses, and start its sshd."""
        _ip("netns", "add", self.name)
        _ip("link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.name)
        _ip("addr", "add", self.gateway, "peer", self.address, "dev", self.veth)
        _ip("link", "set", "dev", self.veth, "up")
        _ip("-n", self.name, "link", "set", "dev", "lo", "up")
        _ip("-n", self.name, "addr", "add", self.address, "peer", self.gateway, "dev", "eth0")
        _ip("-n", self.name, "link", "set", "dev", "eth0", "up")
        _ip("-n", self.name, "route", "add", "default", "via", self.gateway)
        self.workdir.mkdir(mode=0o700, exist_ok=True)
        self.write_sshd_config()
        self.start_sshd()

    def destroy(self) -> list[str]:
        """Kill everything in the namespace, then remove its link and itself; return errors."""
        errors: list[str] = []
        for proc in self._spawned:
            proc.kill()
            try:
                proc.wait(timeout=_KILL_WAIT)
            except subprocess.TimeoutExpired:
                errors.append(f"spawned pid {proc.pid} on {self.alias} did not die")
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        self._spawned.clear()
        errors.extend(_remove_namespace(self.name))
        return errors


def _remove_namespace(namespace: str) -> list[str]:
    """Kill the processes of `namespace`, delete its veth pair and it; return what failed."""
    errors: list[str] = []
    try:
        _kill_all_in(namespace)
    except NetnsError as exc:
        errors.append(str(exc))
    # Deleting one end removes the pair at once (namespace teardown alone is asynchronous).
    for args in (("link", "del", _veth_name(namespace)), ("netns", "del", namespace)):
        result = _ip(*args, check=False)
        if result.returncode != 0 and not _gone(result.stderr):
            errors.append(f"`ip {' '.join(args)}`: {result.stderr.strip()}")
    return errors


# ------------------------------------------------------------------ the cluster


class NetnsCluster:
    """The hosts of one run and the files a client needs to reach them.

    Iterate it, index it by position or alias (``cluster["h2"]``), and pass
    `ssh_config`, `known_hosts` and `client_key` to ssh or asyncssh.
    """

    def __init__(self, workdir: Path, subnet: ipaddress.IPv4Network | None) -> None:
        self.workdir = workdir
        self.run_id = _run_id(workdir)
        self.subnet = subnet
        self.hosts: list[NetnsHost] = []
        self.client_key = workdir / "id"
        self.known_hosts = workdir / "known_hosts"
        self.ssh_config = workdir / "ssh_config"
        self.authorized_keys = workdir / "authorized_keys"
        self._closed = False

    @property
    def gateway(self) -> str:
        """The root namespace's address on every host's link."""
        assert self.subnet is not None
        return str(self.subnet.network_address + 1)

    def __iter__(self) -> Iterator[NetnsHost]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, key: int | str) -> NetnsHost:
        if isinstance(key, int):
            return self.hosts[key]
        for host in self.hosts:
            if key in (host.alias, host.name, host.address):
                return host
        raise KeyError(f"no host {key!r} in {[h.alias for h in self.hosts]}")

    def _save_state(self, namespaces: list[str]) -> None:
        state = {
            "pid": os.getpid(),
            "start_time": _procs.start_time(os.getpid()),
            "namespaces": namespaces,
            "subnet": str(self.subnet) if self.subnet is not None else None,
        }
        _write_atomically(self.workdir / STATE_FILE, json.dumps(state))

    def build(self, n: int, subnet: str | None, shared_host_key: bool) -> None:
        """Claim a subnet, write keys and configs, and create `n` hosts."""
        aliases = [f"h{i}" for i in range(1, n + 1)]
        namespaces = [f"{self.run_id}-{alias}" for alias in aliases]
        self._save_state(namespaces)  # before anything exists, so a crash is sweepable
        self.subnet = _claim_subnet(subnet, n)
        self._save_state(namespaces)
        _keygen(self.client_key, f"client@{self.run_id}")
        self.authorized_keys.write_text((self.workdir / "id.pub").read_text())
        shared_key = self.workdir / "host"
        if shared_host_key:
            _keygen(shared_key, f"host@{self.run_id}")
        for index, (alias, namespace) in enumerate(zip(aliases, namespaces, strict=True), 1):
            host_dir = self.workdir / alias
            host_dir.mkdir(mode=0o700)
            host_key = shared_key if shared_host_key else host_dir / "host"
            if not shared_host_key:
                _keygen(host_key, f"{alias}@{self.run_id}")
            self.hosts.append(
                NetnsHost(
                    alias=alias,
                    namespace=namespace,
                    address=str(self.subnet.network_address + HOST_OFFSET + index),
                    gateway=self.gateway,
                    workdir=host_dir,
                    host_key=host_key,
                    client_key=self.client_key,
                    known_hosts=self.known_hosts,
                    ssh_config=self.ssh_config,
                    authorized_keys=self.authorized_keys,
                )
            )
        self.write_client_files()
        for host in self.hosts:
            host.create()

    def write_client_files(self) -> None:
        """(Re)write ``known_hosts`` and ``ssh_config`` from the hosts' current keys."""
        known = []
        config = [f"# ssh client config for test cluster {self.run_id}"]
        for host in self.hosts:
            public = Path(f"{host.host_key}.pub").read_text()
            known.append(known_hosts_entry(host.address, host.port, public))
            config += [
                f"Host {host.alias} {host.address}",
                f"    HostName {host.address}",
                f"    Port {host.port}",
                f"    User {host.user}",
                f"    IdentityFile {self.client_key}",
                "    IdentitiesOnly yes",
                f"    UserKnownHostsFile {self.known_hosts}",
                "    GlobalKnownHostsFile /dev/null",
                "    StrictHostKeyChecking yes",
                "    BatchMode yes",
                "    ConnectTimeout 5",
            ]
        self.known_hosts.write_text("\n".join(known) + "\n")
        self.ssh_config.write_text("\n".join(config) + "\n")

    def close(self) -> None:
        """Tear everything down, whatever state it is in; raise `NetnsError` if something stays.

        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        for host in self.hosts:
            errors.extend(host.destroy())
        namespaces = [h.name for h in self.hosts]
        errors.extend(_remove_run(self.workdir, namespaces, self.subnet))
        if errors:
            raise NetnsError(f"teardown of {self.run_id} incomplete: {'; '.join(errors)}")


def _run_id(workdir: Path) -> str:
    # /tmp/rock-netns-<pid>-<random> -> rock-<pid>-<random>: short namespace names.
    return "rock-" + workdir.name.removeprefix(WORKDIR_PREFIX)


def _remove_run(
    workdir: Path, namespaces: Sequence[str], subnet: ipaddress.IPv4Network | str | None
) -> list[str]:
    """Remove the namespaces, the subnet's claim and the work directory of one run."""
    errors: list[str] = []
    for namespace in namespaces:
        errors.extend(_remove_namespace(namespace))
    if subnet is not None:
        result = _ip("route", "del", "unreachable", str(subnet), check=False)
        if result.returncode != 0 and not _gone(result.stderr):
            errors.append(f"cannot release subnet {subnet}: {result.stderr.strip()}")
    shutil.rmtree(workdir, ignore_errors=True)
    if workdir.exists():
        errors.append(f"cannot remove {workdir}")
    return errors


# ------------------------------------------------------------------ subnets


def _in_use() -> list[ipaddress.IPv4Network]:
    """Networks of the root namespace's IPv4 addresses and routes (the default route aside)."""
    found = []
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            found.append(ipaddress.IPv4Network(fields[fields.index("inet") + 1], strict=False))
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        fields = line.split()
        if fields and fields[0] in ("unreachable", "blackhole", "prohibit", "local", "broadcast"):
            fields = fields[1:]
        if fields and fields[0] != "default":
            with contextlib.suppress(ValueError):
                found.append(ipaddress.IPv4Network(fields[0], strict=False))
    return found


def _claim_subnet(requested: str | None, n: int) -> ipaddress.IPv4Network:
    """Claim a subnet for `n` hosts with an ``unreachable`` route (atomic across runs)."""
    requested = requested or os.environ.get(SUBNET_ENV) or None
    if requested is not None:
        try:
            net = ipaddress.IPv4Network(requested)
        except ValueError as exc:
            raise NetnsError(f"subnet {requested!r} is not an IPv4 network: {exc}") from exc
        if net.num_addresses < HOST_OFFSET + n + 2:
            raise NetnsError(f"subnet {net} is too small for {n} hosts at .{HOST_OFFSET + 1} up")
        clash = [str(other) for other in _in_use() if other.overlaps(net)]
        if clash:
            raise NetnsError(f"subnet {net} overlaps {', '.join(clash)} on this machine")
        _ip("route", "add", "unreachable", str(net))
        return net
    for net in AUTO_POOL.subnets(new_prefix=24):
        if any(other.overlaps(net) for other in _in_use()):
            continue
        result = _ip("route", "add", "unreachable", str(net), check=False)
        if result.returncode == 0:
            return net
        if "File exists" not in result.stderr:  # not a concurrent run winning the race
            raise NetnsError(f"cannot claim subnet {net}: {result.stderr.strip()}")
    raise NetnsError(f"no free /24 left in {AUTO_POOL} (see `ip route show type unreachable`)")


# ------------------------------------------------------------------ runs


def _owner_alive(state: Mapping[str, Any]) -> bool:
    pid = state.get("pid")
    return (
        isinstance(pid, int)
        and _procs.alive(pid)
        and _procs.start_time(pid) == state.get("start_time")
    )


def sweep_stale() -> list[str]:
    """Remove what runs of dead processes left behind; return the namespaces removed.

    A run is dead when the process recorded in its ``cluster.json`` is gone (or its pid now
    belongs to another process). Namespaces named like ours but without a work directory are
    removed when the pid in their name is gone. Runs of live processes are never touched.
    """
    removed: list[str] = []
    errors: list[str] = []
    tmp = Path(tempfile.gettempdir())
    for state_file in sorted(tmp.glob(f"{WORKDIR_PREFIX}*/{STATE_FILE}")):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue  # being written by its (live) owner, or already swept
        if not isinstance(state, dict) or _owner_alive(state):
            continue
        namespaces = [str(name) for name in state.get("namespaces", [])]
        errors.extend(_remove_run(state_file.parent, namespaces, state.get("subnet")))
        removed.extend(namespaces)
    for namespace in _ip("netns", "list").stdout.split("\n"):
        namespace = namespace.split(" ")[0]
        match = _NETNS_NAME.match(namespace)
        if match is None or namespace in removed:
            continue
        if (tmp / f"{WORKDIR_PREFIX}{match[1]}-{match[2]}").exists():
            continue  # its run's state file decides
        if not _procs.alive(int(match[1])):
            errors.extend(_remove_namespace(namespace))
            removed.append(namespace)
    if errors:
        raise NetnsError(f"sweeping stale test hosts failed: {'; '.join(errors)}")
    return removed


@contextlib.contextmanager
def open_netns_hosts(
    n: int = 3, *, subnet: str | None = None, shared_host_key: bool = False
) -> Iterator[NetnsCluster]:
    """Build `n` namespace hosts (``h1``..``hn``), yield them, and always tear them down.

    `subnet` (or ``$ROCK_TEST_NETNS_SUBNET``) fixes the network; by default the first free /24
    of 10.231.0.0/16 is taken. `shared_host_key` gives every host the same host key.
    """
    if not 1 <= n <= 200:
        raise ValueError(f"n must be between 1 and 200 hosts, got {n}")
    if os.geteuid() != 0:
        raise NetnsError("namespace hosts need root (`ip netns add`); run the tests as root")
    if not Path(SSHD).exists():
        raise NetnsError(f"no {SSHD}: install openssh-server (bash scripts/setup-host.sh)")
    sweep_stale()
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
    workdir.chmod(0o755)
    cluster = NetnsCluster(workdir, None)
    try:
        cluster.build(n, subnet, shared_host_key)
        yield cluster
    finally:
        cluster.close()
