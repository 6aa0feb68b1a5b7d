#!/usr/bin/env bash
# Rootless Podman for tests/agent/test_podman_runtime.py (the runtime conformance suite on
# Podman, run as an ordinary user): Debian's podman and what rootless needs, the user
# `rock-podman` (NOT in the docker group) with subordinate uid/gid ranges, and the test images
# loaded into that user's store from the Docker engine (there is no registry here).
# Idempotent: installed packages, the user and loaded images are kept.
#
#   ROCK_PODMAN_USER=NAME   the user (rock-podman)
set -euo pipefail
user=${ROCK_PODMAN_USER:-rock-podman}
images=("${ROCK_TEST_PY_IMAGE:-python:3.11}" "${ROCK_TEST_SH_IMAGE:-rock-test/busybox:latest}")

fail() { echo "podman.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (it installs packages and creates the user $user)"

# ---------------------------------------------------------------- packages
# catatonit: Podman's init for containers made with Init (every sandbox is); runc: the OCI
# runtime used where crun refuses the host's cgroups (below).
packages=(podman uidmap slirp4netns fuse-overlayfs catatonit crun runc)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
        || fail "cannot install ${missing[*]}"
fi

# ---------------------------------------------------------------- the user
if ! id "$user" >/dev/null 2>&1; then
    useradd -m -s /bin/bash "$user" || fail "cannot create the user $user"
fi
id -nG "$user" | tr ' ' '\n' | grep -qx docker && fail "$user must not be in the docker group"
# Subordinate ids: the container's uids 1..65536 map to these (useradd adds them on Debian).
grep -q "^$user:" /etc/subuid || usermod --add-subuids 200000-265535 "$user"
grep -q "^$user:" /etc/subgid || usermod --add-subgids 200000-265535 "$user"

as_user() { runuser -l "$user" -c "$1"; }

# crun refuses a hybrid cgroup host (cgroup v1 with a v2 hierarchy mounted beside it at
# /sys/fs/cgroup/unified, as here), whether or not that hierarchy holds controllers: use runc
# there. A pure cgroup v2 (or pure v1) host keeps Debian's default, crun.
conf_dir=$(getent passwd "$user" | cut -d: -f6)/.config/containers
if [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
    as_user "mkdir -p '$conf_dir' && printf '[engine]\nruntime = \"runc\"\n' > '$conf_dir/containers.conf'"
fi
as_user "podman info >/dev/null" || fail "podman does not run as $user (see: su - $user -c 'podman info')"

# ---------------------------------------------------------------- the test images
for image in "${images[@]}"; do
    if ! as_user "podman image exists 'localhost/$image' || podman image exists '$image'"; then
        docker image inspect "$image" >/dev/null 2>&1 \
            || fail "image $image is missing from Docker: run scripts/setup-host.sh first"
        docker save "$image" | as_user "podman load -q" >/dev/null \
            || fail "cannot load $image into $user's podman"
    fi
done
