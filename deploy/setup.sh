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
    # the web console's end-to-end tests: a real headless browser and its WebDriver
    chromium chromium-driver
)

# QEMU from Debian's bookworm-backports (10.x) on Debian 12: under QEMU 7.2's TCG, lab
# guests crashed after long live migrations (measured in docs/lab.md, "QEMU version").
# libvirt stays Debian 12's own (9.0). The backports entry reuses the mirror and keyring
# of the machine's own bookworm entry, so no address is invented here.
BACKPORTS_QEMU=(qemu-system-x86 qemu-utils)
QEMU_MIN_VERSION=1:8.0
backports_entry=/etc/apt/sources.list.d/drs-bookworm-backports.sources
want_backports=0
if [ -r /etc/os-release ] && grep -qx 'VERSION_CODENAME=bookworm' /etc/os-release; then
    want_backports=1
fi

bookworm_stanza() {
    # Print "URIS<TAB>SIGNED_BY" of the first deb822 or one-line entry serving bookworm main.
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v RS= -v FS='\n' '
            /(^|\n)Suites:[^\n]*[[:space:]]bookworm([[:space:]]|$)/ && /(^|\n)Components:[^\n]*main/ &&
            /(^|\n)Types:[^\n]*deb([[:space:]]|$)/ {
                uris=""; key=""
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { uris=$i; sub(/^URIs:[[:space:]]*/, "", uris) }
                    if ($i ~ /^Signed-By:/) { key=$i; sub(/^Signed-By:[[:space:]]*/, "", key) }
                }
                if (uris != "") { print uris "\t" key; exit }
            }' "$f" | head -n1 | grep . && return 0
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '$1 == "deb" {
                uri=""; n=0
                for (i = 2; i <= NF; i++) { if ($i ~ /^\[/ || $i ~ /\]$/ || $i ~ /=/) continue; n++; w[n]=$i }
                if (n >= 3 && w[2] == "bookworm") { print w[1] "\t"; exit }
            }' "$f" | head -n1 | grep . && return 0
    done
    return 1
}

if [ "$want_backports" = 1 ] && [ ! -f "$backports_entry" ]; then
    if ! entry=$(bookworm_stanza); then
        echo "setup: no apt entry for Debian bookworm found; cannot add bookworm-backports" >&2
        exit 1
    fi
    uris=${entry%%$'\t'*}
    key=${entry#*$'\t'}
    {
        echo "Types: deb"
        echo "URIs: $uris"
        echo "Suites: bookworm-backports"
        echo "Components: main"
        [ -n "$key" ] && echo "Signed-By: $key"
    } >"$backports_entry.tmp"
    mv "$backports_entry.tmp" "$backports_entry"
    echo "setup: added $backports_entry (QEMU from bookworm-backports)"
fi

qemu_ok() {
    local pkg v
    for pkg in "${BACKPORTS_QEMU[@]}"; do
        v=$(dpkg-query -W -f='${Status} ${Version}' "$pkg" 2>/dev/null) || return 1
        case "$v" in "install ok installed "*) ;; *) return 1 ;; esac
        dpkg --compare-versions "${v##* }" ge "$QEMU_MIN_VERSION" || return 1
    done
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if [ "$want_backports" = 1 ] && [[ " ${BACKPORTS_QEMU[*]} " == *" $pkg "* ]]; then
        continue  # from backports, below
    fi
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
export DEBIAN_FRONTEND=noninteractive
updated=0
apt_update() {
    [ "$updated" = 1 ] && return 0
    apt-get update -q >/dev/null
    updated=1
}
if [ "$want_backports" = 1 ] && ! qemu_ok; then
    echo "setup: installing ${BACKPORTS_QEMU[*]} from bookworm-backports"
    apt_update
    apt-get install -y -q --no-install-recommends -t bookworm-backports "${BACKPORTS_QEMU[@]}" >/dev/null
    qemu_ok || { echo "setup: QEMU >= ${QEMU_MIN_VERSION#1:} not installed" >&2; exit 1; }
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt_update
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
    .venv/bin/python -m pip install -q -U pip >/dev/null 2>&1 || true
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
