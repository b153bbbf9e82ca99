#!/usr/bin/env bash
# The README's first command: set everything up, then `drs demo`: a lab with every guest
# on one host, `drs serve` in automatic mode converging live, the before/after summary
# and the path of an HTML report; the lab is taken down at the end.
# Extra arguments go to `drs demo` (e.g. --plain for log lines, --keep-lab).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
exec .venv/bin/drs demo "$@"
