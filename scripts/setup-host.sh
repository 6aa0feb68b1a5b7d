#!/usr/bin/env bash
# Make this machine ready for rock: a running Docker engine, the images the examples and tests
# use (built locally: no registry is needed), an OpenSSH server on loopback for the SSH tests,
# and the package installed. Idempotent: each step is skipped when already done.
#
#   ROCK_SETUP_SKIP_SSHD=1     skip the sshd step
#   ROCK_SETUP_SKIP_PACKAGE=1  do not install the package into python3 (the quickstart uses a venv)
#   ROCK_SSH_DIR=DIR         where the test sshd keeps its keys and config (/tmp/rock-sshd)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
apt_updated=0
apt_install() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "need root to install: ${missing[*]} (run as root, or install them first)" >&2
        exit 1
    fi
    if [ $apt_updated = 0 ]; then apt-get update -q >/dev/null; apt_updated=1; fi
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------- Docker engine
if ! timeout 10 docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null 2>&1 || apt_install docker.io
    say "starting dockerd"
    nohup /usr/sbin/dockerd --host unix:///var/run/docker.sock >/tmp/dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        timeout 5 docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    timeout 10 docker info >/dev/null 2>&1 || { tail -20 /tmp/dockerd.log >&2; exit 1; }
fi

# ---------------------------------------------------------------- images
if ! docker image inspect rock-test/busybox:latest >/dev/null 2>&1; then
    apt_install busybox-static
    say "building image rock-test/busybox:latest"
    root=$(mktemp -d)
    mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/root"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $("$root/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"
    tar -C "$root" -c . | docker import - rock-test/busybox:latest >/dev/null
    rm -rf "$root"
fi
if ! docker image inspect python:3.11 >/dev/null 2>&1; then
    apt_install debootstrap
    say "building image python:3.11 (Debian bookworm + python3 3.11, about a minute)"
    root=$(mktemp -d)
    debootstrap --variant=minbase --include=python3 bookworm "$root" >/tmp/debootstrap.log 2>&1 \
        || { tail -20 /tmp/debootstrap.log >&2; exit 1; }
    tar -C "$root" -c . | docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - python:3.11 >/dev/null
    rm -rf "$root"
fi

# ---------------------------------------------------------------- what only the tests need
# (skipped by scripts/quickstart.sh, which sets ROCK_SETUP_SKIP_SSHD=1)
if [ "${ROCK_SETUP_SKIP_SSHD:-0}" != 1 ]; then
    # The tests check the agent's unit file with `systemd-analyze verify` (systemd need not run).
    command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
    # ssh and ssh-keygen for the SSH tests; `ip netns` for the namespace hosts of tests/cluster.
    apt_install openssh-client iproute2
    # Run as root, tests/integration/test_nonroot_agent.py gives a user of the docker group a
    # Python of its own, from the system's (scripts/nonroot-agent-env.sh).
    if [ "$(id -u)" = 0 ] && ! /usr/bin/python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
        apt_install python3 python3-venv
    fi
fi

# ---------------------------------------------------------------- sshd on loopback
if [ "${ROCK_SETUP_SKIP_SSHD:-0}" != 1 ]; then
    ssh_dir=${ROCK_SSH_DIR:-/tmp/rock-sshd}
    if ! { [ -f "$ssh_dir/sshd.pid" ] && kill -0 "$(cat "$ssh_dir/sshd.pid")" 2>/dev/null; }; then
        command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || apt_install openssh-server
        say "starting sshd on 127.0.0.1:2222 ($ssh_dir)"
        mkdir -p "$ssh_dir" /run/sshd
        [ -f "$ssh_dir/id" ] || ssh-keygen -q -t ed25519 -N '' -f "$ssh_dir/id"
        [ -f "$ssh_dir/host" ] || ssh-keygen -q -t ed25519 -N '' -f "$ssh_dir/host"
        cp "$ssh_dir/id.pub" "$ssh_dir/authorized_keys"
        chmod 600 "$ssh_dir/authorized_keys"
        echo "[127.0.0.1]:2222 $(cut -d' ' -f1,2 "$ssh_dir/host.pub")" >"$ssh_dir/known_hosts"
        cat >"$ssh_dir/sshd_config" <<CONF
Port 2222
ListenAddress 127.0.0.1
HostKey $ssh_dir/host
AuthorizedKeysFile $ssh_dir/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowStreamLocalForwarding yes
PidFile $ssh_dir/sshd.pid
StrictModes no
CONF
        /usr/sbin/sshd -f "$ssh_dir/sshd_config"
    fi
fi

# ---------------------------------------------------------------- the package
# For the tests: this checkout, editable, in the Python that runs them. Another checkout's
# rock_sdk does not count. (scripts/quickstart.sh installs into a venv of its own instead.)
if [ "${ROCK_SETUP_SKIP_PACKAGE:-0}" != 1 ] && ! python3 -c "
import sys, rock_sdk, rock_agent, pytest_timeout
sys.exit(not rock_sdk.__file__.startswith('$PWD/src/'))" >/dev/null 2>&1; then
    say "installing rock-kit from $PWD (editable, with dev tools)"
    python3 -m pip install -q -e ".[dev,ssh]"
fi
say "host ready: $(docker version --format 'engine {{.Server.Version}}'), images python:3.11 and rock-test/busybox:latest"
