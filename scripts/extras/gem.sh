#!/usr/bin/env bash
# The GEM and skyrl-gym extras (rock_sdk.integrations.gem), for their tests: gem-llm==0.1.0
# and skyrl-gym==0.4.0. gem-llm pins msgspec==0.19.0, which would downgrade the kit's own
# msgspec; gem uses msgspec only in its web-search tools, so it is installed without its
# dependencies, and those that `import gem` needs are installed pinned beside it.
# Idempotent: every package is pinned, so a second run installs nothing.
set -euo pipefail
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
pip() { python3 -m pip install -q "$@" 2>&1 | { grep -v -e '^WARNING: ' -e "pip's dependency resolver" -e ', which is not installed' -e ', which is incompatible' || true; }; }
pip --no-deps gem-llm==0.1.0
pip reasoning-gym==0.1.23 skyrl-gym==0.4.0
python3 -c 'import gem, skyrl_gym' 2>/dev/null || {
    echo "gem.sh: gem or skyrl_gym does not import" >&2
    python3 -c 'import gem, skyrl_gym'
}
