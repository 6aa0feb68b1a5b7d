#!/usr/bin/env bash
# Make this machine ready to run a rock agent as an ordinary user, as users do: a user in the
# docker group, and a Python of its own that has this checkout's package (root's Python may
# live where other users cannot enter). Run as root. Idempotent and quick when done already:
# the package is reinstalled only when the checkout's sources changed.
#
#   ROCK_NONROOT_USER=NAME   the user (rock-ci)
#   ROCK_NONROOT_UID=UID     its uid when it is created (4242)
#   ROCK_NONROOT_VENV=DIR    the Python environment, owned by root, readable by all
#                            (/tmp/rock-nonroot-venv)
#
# Prints the environment's python on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
user=${ROCK_NONROOT_USER:-rock-ci}
uid=${ROCK_NONROOT_UID:-4242}
venv=${ROCK_NONROOT_VENV:-/tmp/rock-nonroot-venv}
python=/usr/bin/python3

fail() { echo "nonroot-agent-env: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (it creates the user $user)"
[ -x "$python" ] || fail "$python is missing (install python3 and python3-venv)"
getent group docker >/dev/null || fail "there is no docker group (is Docker installed?)"

# ---------------------------------------------------------------- the user
if ! id "$user" >/dev/null 2>&1; then
    useradd -m -u "$uid" -G docker "$user" || fail "cannot create the user $user"
elif ! id -nG "$user" | tr ' ' '\n' | grep -qx docker; then
    usermod -a -G docker "$user" || fail "cannot add $user to the docker group"
fi

# ---------------------------------------------------------------- its Python
# What the installed package was built from: the sources and the project file.
digest=$( (find src -name '*.py' -o -name 'py.typed' | LC_ALL=C sort | xargs sha256sum;
           sha256sum pyproject.toml) | sha256sum | cut -d' ' -f1)
stamp="$venv/.rock-source"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
    echo "$venv/bin/python"
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    rm -rf "$venv"
    "$python" -m venv "$venv" || fail "cannot make a venv in $venv (is python3-venv installed?)"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# A copy of the checkout: pip builds in place, and the checkout may have files of other users.
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp -r src pyproject.toml README.md "$build"/
"$venv/bin/python" -m pip wheel -q --no-deps -w "$build/dist" "$build" \
    || fail "cannot build the package (is the package index reachable?)"
wheel=$(echo "$build"/dist/*.whl)
"$venv/bin/python" -m pip install -q "$wheel" || fail "cannot install the dependencies into $venv"
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$wheel" \
    || fail "cannot install the package into $venv"
chmod -R a+rX "$venv"
echo "$digest" >"$stamp"
"$venv/bin/rock-agent" --help >/dev/null || fail "$venv/bin/rock-agent does not run"
echo "$venv/bin/python"
