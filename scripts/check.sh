#!/usr/bin/env bash
# Lint, type-check and run the whole test suite; non-zero if anything fails or no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> ruff"; python3 -m ruff check src tests bench examples
echo "==> mypy"; python3 -m mypy
echo "==> pytest"
set +e
python3 -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here" >&2; exit 1; fi
exit $rc
