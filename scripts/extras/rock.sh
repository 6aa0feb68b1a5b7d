#!/usr/bin/env bash
# ROCK (rl-rock, pinned): its wheel is downloaded, never installed. tests/integrations/
# test_rock_compat.py takes ROCK's README sandbox snippet from the wheel's METADATA and runs it
# on rock_sdk.compat.rock with only its imports changed. Idempotent: a present wheel is kept.
set -euo pipefail
dest=/opt/rock-extras/rl-rock
wheel="$dest/rl_rock-1.11.0-py3-none-any.whl"
if [ ! -f "$wheel" ]; then
    mkdir -p "$dest"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$dest" rl-rock==1.11.0
fi
test -f "$wheel"
