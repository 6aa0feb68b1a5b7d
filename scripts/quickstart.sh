#!/usr/bin/env bash
# The main job on one machine: set the host up (Docker engine, images, package), then run the
# quickstart through an embedded core and a local agent. No server to start.
set -euo pipefail
cd "$(dirname "$0")/.."
ROCK_SETUP_SKIP_SSHD=${ROCK_SETUP_SKIP_SSHD:-1} bash scripts/setup-host.sh
echo "==> python examples/quickstart.py"
python3 examples/quickstart.py
