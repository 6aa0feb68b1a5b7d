#!/usr/bin/env bash
# The SWE-ReX extra (rock-kit[swerex]): swe-rex, pinned as in pyproject.toml, into the python3
# that runs the tests. Its client drives tests/integrations/test_swerex.py; the endpoint itself
# needs only aiohttp, which the kit already has. Idempotent: pip keeps an installed pin.
set -euo pipefail
python3 -m pip install --quiet --disable-pip-version-check 'swe-rex==1.4.0'
