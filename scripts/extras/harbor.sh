#!/usr/bin/env bash
# Harbor needs Python >= 3.12: install harbor (pinned as in pyproject.toml) and this checkout,
# with its [ssh] extra, into a venv of its own at /opt/rock-extras/harbor. Idempotent and quiet;
# tests/integrations/test_harbor.py runs Harbor trials with that venv's python.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv=/opt/rock-extras/harbor
harbor_version=0.26.0
python=""
for candidate in /root/.pyenv/versions/3.12.1/bin/python3.12 "$(command -v python3.12 || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then python="$candidate"; break; fi
done
if [ -z "$python" ]; then
    echo "harbor.sh: Harbor needs Python 3.12: neither /root/.pyenv/versions/3.12.1/bin/python3.12 nor python3.12 on PATH" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
installed="$({ "$venv/bin/python" -m pip show harbor 2>/dev/null || true; } | sed -n 's/^Version: //p')"
if [ "$installed" != "$harbor_version" ]; then
    "$venv/bin/python" -m pip install -qq "harbor==$harbor_version"
fi
# This checkout, editable, so the venv always runs the code of the tree it was set up from.
"$venv/bin/python" -m pip install -qq -e "$repo[ssh]"
