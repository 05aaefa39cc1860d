#!/usr/bin/env bash
# README command 2: set up (idempotent), then lint, type-check and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check .
mypy drivesim
set +e
pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected no test: that is a failure, never a pass.
if [ "$rc" -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$rc"
