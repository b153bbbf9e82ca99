#!/usr/bin/env bash
# Idempotent setup on Debian 12 (root): system packages for the lab, PostgreSQL and
# Prometheus, a virtualenv in .venv and the package with its dev extras.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    # lab cluster: libvirtd hosts and TCG guests (docs/lab.md)
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
    busybox-static cpio
    # building libvirt-python and the guest's static load generator
    libvirt-dev pkg-config gcc libc6-dev
    # real services the tests run against
    postgresql prometheus
    # fault injection (dropping a lab host's migration traffic on loopback)
    iptables
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these at install time when it can; the project starts its own instances.

PY=${PYTHON:-}
if [ -z "$PY" ]; then
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            PY=$cand; break
        fi
    done
fi
[ -n "$PY" ] || { echo "setup: Python >= 3.11 not found" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
    if ! "$PY" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        apt-get install -y -q python3-venv >/dev/null
        "$PY" -m venv .venv
    fi
fi
stamp=.venv/.drs-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing the package into .venv"
    .venv/bin/python -m pip install -q -U pip >/dev/null
    piplog=$(mktemp)
    # setuptools warns about editable installs on every run: show pip's output only on failure
    if ! .venv/bin/python -m pip install -q -e '.[dev]' >"$piplog" 2>&1; then
        cat "$piplog" >&2
        rm -f "$piplog"
        exit 1
    fi
    rm -f "$piplog"
    echo "$want" >"$stamp"
fi
