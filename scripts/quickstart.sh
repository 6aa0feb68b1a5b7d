#!/usr/bin/env bash
# The main job on one machine: set the host up (Docker engine, images), install this checkout
# into a virtual environment of its own, and run the quickstart through an embedded core and a
# local agent. No server to start. Works as root and as an ordinary user in the docker group
# (once root has set the host up).
#
#   ROCK_VENV=DIR   the environment: the active one if any, else .venv in this checkout
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
ROCK_SETUP_SKIP_SSHD=${ROCK_SETUP_SKIP_SSHD:-1} ROCK_SETUP_SKIP_PACKAGE=1 bash scripts/setup-host.sh

venv=${ROCK_VENV:-${VIRTUAL_ENV:-$PWD/.venv}}
if [ ! -x "$venv/bin/python" ]; then
    if [ -e "$venv" ] && [ -n "$(ls -A "$venv")" ]; then
        echo "$venv is not a virtual environment (no bin/python); set ROCK_VENV to another place" >&2
        exit 1
    fi
    echo "==> making a virtual environment in $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"   # half made (it was empty or absent: checked above)
        # Debian's python3 makes venvs only with python3-venv installed.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null
            python3 -m venv "$venv"
        else
            echo "cannot make a venv: install python3-venv (as root: apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi
echo "==> installing this checkout into $venv"
"$venv/bin/python" -m pip install -q -e ".[ssh]"
echo "==> $venv/bin/python examples/quickstart.py"
"$venv/bin/python" examples/quickstart.py
