#!/usr/bin/env bash
# The ray extra, for tests/integrations/test_ray_hosts.py (HostSource.from_ray in
# rock_core._ray_source) and test_ray_transport.py (the agent behind a Ray actor,
# rock_sdk.integrations.ray): ray==2.60.0, the version verl.sh installs too (one Ray for both),
# with no optional Ray component (dashboard, serve, tune): discovery reads only the GCS node
# table, and the transport needs only actors.
# Idempotent: pinned, so a second run installs nothing.
set -euo pipefail
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
python3 -m pip install -q ray==2.60.0 2>&1 | { grep -v -e '^WARNING: ' || true; }
python3 -c 'import ray' 2>/dev/null || {
    echo "ray.sh: ray does not import" >&2
    python3 -c 'import ray'
}
command -v ray >/dev/null || { echo "ray.sh: no 'ray' command on PATH" >&2; exit 1; }
