#!/usr/bin/env bash
# Follows docs/production.md step by step on this machine, the way an operator would on a
# fresh Debian host, with a lab standing in for the KVM hosts (reached over qemu+tls with
# certificates made here). Every step prints "step N: ..." as the guide numbers it.
#
#   bash deploy/production-check.sh          (as root, after deploy/setup.sh)
#
# Paths of the guide live under one scratch root ($root/opt/libvirt-drs, $root/etc/drs,
# $root/var/lib/drs) so the check leaves the machine as it found it, except the `drs`
# system user, which the guide creates. systemd does not run here: step 8 starts the
# unit's ExecStartPre and ExecStart lines as its User= with its Environment=, and stops
# the service with its KillSignal.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dev_drs="$repo/.venv/bin/drs"   # only for the lab, which stands in for the KVM hosts
work=$(mktemp -d /var/tmp/drs-production.XXXXXX)
root=$work/root
mkdir -p "$root"
chmod 0755 "$work" "$root"  # the drs user walks into $root as into /
lab=prod$$
base=${DRS_PRODUCTION_BASE:-127.0.1.11}  # outside the test labs' blocks (127.0.0.x)
pg_port=${DRS_PRODUCTION_PG_PORT:-54341}
metrics_port=${DRS_PRODUCTION_METRICS_PORT:-9181}
web_port=${DRS_PRODUCTION_WEB_PORT:-8181}
prom_port=${DRS_PRODUCTION_PROMETHEUS_PORT:-9191}
serve_pid= prom_pid=

step() { echo "step $1: $2"; }
fail() { echo "production-check: FAILED: $*" >&2; exit 1; }
cleanup() {
    set +e
    [ -n "$serve_pid" ] && kill -TERM "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
    [ -n "$prom_pid" ] && kill -TERM "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null
    "$dev_drs" lab down --name "$lab" >/dev/null 2>&1
    bash "$repo/deploy/test-postgres.sh" stop "$work/pg" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] || fail "run as root"
[ -x "$dev_drs" ] || fail "run deploy/setup.sh first (the lab comes from the checkout)"

step 0 "system packages of the drs host"
need=()
for pkg in python3 python3-venv python3-dev gcc pkg-config libvirt-dev openssl curl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

step 1 "build the wheel and the sdist (python -m build)"
mkdir -p "$work/src" "$work/dist"
cp -a "$repo/pyproject.toml" "$repo/README.md" "$repo/libvirt_drs" "$repo/balancer" \
    "$repo/collectors" "$repo/migrator" "$repo/migrations" "$repo/deploy" "$work/src/"
"$repo/.venv/bin/python" -m build --no-isolation --outdir "$work/dist" "$work/src" \
    >"$work/build.log" 2>&1 || { tail -20 "$work/build.log"; fail "build"; }
wheel=$(ls "$work"/dist/libvirt_drs-*.whl)

step 2 "system user drs"
if ! id drs >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/drs --no-create-home --shell /usr/sbin/nologin drs
fi
mkdir -p "$root/var/lib/drs" "$root/etc/drs/pki"
chown drs:drs "$root/var/lib/drs"
chmod 0700 "$root/var/lib/drs"

step 3 "virtualenv in /opt/libvirt-drs and the wheel with its dependencies"
/usr/bin/python3 -m venv "$root/opt/libvirt-drs/.venv"  # the system's Python, as the guide
"$root/opt/libvirt-drs/.venv/bin/pip" install -q "$wheel" >"$work/pip.log" 2>&1 \
    || { tail -20 "$work/pip.log"; fail "pip install"; }
drs=$root/opt/libvirt-drs/.venv/bin/drs
"$drs" --version
"$drs" files --copy-to "$root/opt/libvirt-drs/deploy" >/dev/null
chmod -R go+rX "$root/opt"  # /opt is world-readable on a real system too

step 4 "PostgreSQL: role and database drs"
super_url=$(bash "$repo/deploy/test-postgres.sh" start "$work/pg" "$pg_port")
db_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
"$repo/.venv/bin/python" - "$super_url" "$db_pw" <<'EOF'
import sys
import psycopg
url, pw = sys.argv[1], sys.argv[2]
with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
    c.execute(f"CREATE ROLE drs LOGIN PASSWORD '{pw}'")
    c.execute("CREATE DATABASE drs OWNER drs")
EOF

step 5 "TLS: a CA, a client certificate for drs, a server certificate per KVM host"
pki=$work/pki  # the CA's key stays with the administrator, not on the drs host
mkdir -m 0700 -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=drs test CA" \
    -keyout "$pki/cakey.pem" -out "$pki/cacert.pem" 2>/dev/null
sign() {  # sign NAME SUBJECT EXT
    openssl req -new -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" \
        -out "$pki/$1.csr" 2>/dev/null
    printf '%s\n' "$3" >"$pki/$1.ext"
    openssl x509 -req -in "$pki/$1.csr" -CA "$pki/cacert.pem" -CAkey "$pki/cakey.pem" \
        -CAcreateserial -days 2 -extfile "$pki/$1.ext" -out "$pki/$1.pem" 2>/dev/null
}
hosts_tls=$work/hosts-tls  # what each KVM host keeps in /etc/pki/libvirt (here: per address)
mkdir -p "$hosts_tls"
cp "$pki/cacert.pem" "$hosts_tls/"
addresses=()
IFS=. read -r a b c d <<<"$base"
for i in 0 1; do
    addr="$a.$b.$c.$((d + i))"
    addresses+=("$addr")
    sign "server-$addr" "/CN=$addr" \
        "subjectAltName=IP:$addr
extendedKeyUsage=serverAuth
keyUsage=digitalSignature,keyEncipherment"
    mkdir -p "$hosts_tls/$addr"
    cp "$pki/server-$addr.pem" "$hosts_tls/$addr/servercert.pem"
    cp "$pki/server-$addr.key" "$hosts_tls/$addr/serverkey.pem"
done
sign client "/CN=drs/O=libvirt-drs" "extendedKeyUsage=clientAuth
keyUsage=digitalSignature,keyEncipherment"
install -m 0644 "$pki/cacert.pem" "$root/etc/drs/pki/cacert.pem"
install -m 0644 "$pki/client.pem" "$root/etc/drs/pki/clientcert.pem"
install -m 0640 -g drs "$pki/client.key" "$root/etc/drs/pki/clientkey.pem"
chown root:drs "$root/etc/drs" "$root/etc/drs/pki"
chmod 0750 "$root/etc/drs" "$root/etc/drs/pki"
# the KVM hosts: two lab libvirtds listening for qemu+tls with those server certificates
"$dev_drs" lab up --name "$lab" --hosts 2 --vms 2 --burn 20,10 --placement h1,h1 \
    --base-address "$base" --tls-dir "$hosts_tls" >"$work/lab.log" 2>&1 \
    || { tail -20 "$work/lab.log"; fail "lab up"; }

step 6 "configuration /etc/drs/drs.toml, checked; the schema"
config=$root/etc/drs/drs.toml
{
    echo "[database]"
    echo "url = \"postgresql+psycopg://drs:$db_pw@127.0.0.1:$pg_port/drs\""
    for i in 0 1; do
        echo "[[hosts]]"
        echo "name = \"kvm-$((i + 1))\""
        echo "uri = \"qemu+tls://${addresses[$i]}/system?pkipath=$root/etc/drs/pki\""
        echo "cpu_cores = 1.0"
        echo "mem_mib = 2048"
    done
    echo "[balancer]"
    echo "mode = \"manual\""
    echo "[service]"
    echo "metrics_listen = \"127.0.0.1:$metrics_port\""
    echo "[web]"
    echo "listen = \"127.0.0.1:$web_port\""
} >"$config"
chown root:drs "$config"
chmod 0640 "$config"
as_drs() { runuser -u drs -- env -i PATH=/usr/bin:/bin HOME=/var/lib/drs DRS_CONFIG="$config" "$@"; }
as_drs "$drs" config check
as_drs "$drs" db upgrade
if as_drs "$drs" config check 2>&1 | grep -q "$db_pw"; then fail "the password was printed"; fi

step 7 "first look: one collection, the status, the recommendation (nothing moves)"
as_drs "$drs" collect --once --prime-s 2
as_drs "$drs" status
as_drs "$drs" recommend

step 8 "the systemd unit: ExecStartPre and ExecStart as User=drs with its Environment"
unit=$root/opt/libvirt-drs/deploy/drs.service
user=$(sed -n 's/^User=//p' "$unit")
[ "$user" = drs ] || fail "unit User=$user"
pre=$(sed -n 's/^ExecStartPre=//p' "$unit" | sed "s#/opt/libvirt-drs#$root/opt/libvirt-drs#")
start=$(sed -n 's/^ExecStart=//p' "$unit" | sed "s#/opt/libvirt-drs#$root/opt/libvirt-drs#")
envs=$(sed -n 's/^Environment=//p' "$unit" | sed "s#/etc/drs/drs.toml#$config#")
# shellcheck disable=SC2086 # the unit's words, as systemd splits them
runuser -u "$user" -- env -i PATH=/usr/bin:/bin $envs $pre
# setpriv execs the service itself (as systemd does): the pid below is drs serve's own
(cd "$root/var/lib/drs" && exec setpriv --reuid="$user" --regid="$user" --init-groups -- \
    env -i PATH=/usr/bin:/bin $envs $start >"$work/serve.log" 2>&1) &
serve_pid=$!
for _ in $(seq 1 60); do
    curl -fsS "http://127.0.0.1:$metrics_port/healthz" >/dev/null 2>&1 && break
    sleep 0.5
done
curl -fsS "http://127.0.0.1:$metrics_port/healthz" || { cat "$work/serve.log"; fail "healthz"; }
grep -q "serving: mode manual.*console on http://127.0.0.1:$web_port/" "$work/serve.log" \
    || { cat "$work/serve.log"; fail "start line with the console URL"; }
token=$(as_drs "$drs" tokens create ops --role operator)
curl -fsS -o /dev/null "http://127.0.0.1:$web_port/login" || fail "the console's login page"
curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$web_port/api/v1/status?vms=false" \
    | grep -q '"name":"kvm-1"' || fail "the API's status"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$web_port/api/v1/status")
[ "$code" = 401 ] || fail "the API answered $code without a token"

step 9 "Prometheus: the packaged scrape config and alert rules"
mkdir -p "$work/prom"
sed "s#127.0.0.1:9177#127.0.0.1:$metrics_port#; s#scrape_interval: 15s#scrape_interval: 1s#" \
    "$root/opt/libvirt-drs/deploy/prometheus.yml" >"$work/prom/prometheus.yml"
cp "$root/opt/libvirt-drs/deploy/drs-rules.yml" "$work/prom/"
promtool check config "$work/prom/prometheus.yml" >/dev/null
prometheus --config.file="$work/prom/prometheus.yml" --storage.tsdb.path="$work/prom/data" \
    --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prom/log" 2>&1 &
prom_pid=$!
up=
for _ in $(seq 1 60); do
    up=$(curl -fsS "http://127.0.0.1:$prom_port/api/v1/query?query=drs_host_vms" 2>/dev/null \
         | grep -o '"host":"kvm-1"' || true)
    [ -n "$up" ] && break
    sleep 1
done
[ -n "$up" ] || { cat "$work/prom/log"; fail "Prometheus has no drs_host_vms for kvm-1"; }
rules=$(curl -fsS "http://127.0.0.1:$prom_port/api/v1/rules" | grep -o '"name":"Drs[A-Za-z]*"' | wc -l)
[ "$rules" -ge 5 ] || fail "alert rules not loaded ($rules)"

step 10 "a live migration over qemu+tls, as the drs user, with the service running"
as_drs "$drs" migrate vm1 --to kvm-2 --yes
as_drs "$drs" jobs
as_drs "$drs" audit --limit 5

step 11 "stop the service with the unit's KillSignal: it exits 0"
signal=$(sed -n 's/^KillSignal=SIG//p' "$unit")
kill -"$signal" "$serve_pid"
rc=0
wait "$serve_pid" || rc=$?
serve_pid=
[ "$rc" = 0 ] || { cat "$work/serve.log"; fail "drs serve exited $rc"; }
if grep -q -e "$db_pw" -e "$token" "$work/serve.log"; then fail "a secret reached the log"; fi
echo "production-check: OK"
