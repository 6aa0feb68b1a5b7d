#!/usr/bin/env bash
# mini-swe-agent, for tests/integrations/test_minisweagent.py and bench/bench_minisweagent.py;
# pinned as in pyproject.toml's `mini-swe-agent` extra. Idempotent: pip skips a satisfied pin.
set -euo pipefail
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
python3 -m pip install --quiet 'mini-swe-agent==2.4.6'
