#!/usr/bin/env bash
# The README's test command: set up everything, start a throwaway PostgreSQL, run the
# whole suite (ruff + mypy, then unit, store on SQLite + PostgreSQL, lab integration and
# end-to-end).
# Extra arguments go to pytest (e.g. deploy/test.sh -m 'not lab').
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh

# Static checks first: they take seconds and name the line.
.venv/bin/ruff check .
.venv/bin/mypy

pgdir=$(mktemp -d /var/tmp/drs-test-pg.XXXXXX)
cleanup() { bash deploy/test-postgres.sh stop "$pgdir"; }
trap cleanup EXIT
DRS_TEST_POSTGRES_URL=$(bash deploy/test-postgres.sh start "$pgdir" "${DRS_TEST_PG_PORT:-54330}")
export DRS_TEST_POSTGRES_URL

set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test: pytest collected no tests: failing" >&2
    exit 1
fi
exit "$rc"
